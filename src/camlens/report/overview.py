"""Overview pages: a run's photos as rows of thumbnails, at most ``per_page`` rows a page, each
page written as soon as it is full. A run of any size gives pages anyone can open, and a killed
run keeps the pages it finished."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageOps

from ..data.files import write_atomically
from .sheets import grid

__all__ = ["OverviewPages", "PER_PAGE"]

PER_PAGE = 50


class OverviewPages:
    """Collects rows (a photo and its overlays, a title per panel, a label per row) and writes
    ``overview-001.png``, ``overview-002.png``, … into ``folder``. Panels are shrunk to
    ``thumbnail`` pixels as they are added, so a page in the making holds little memory.
    ``first_page`` lets a resumed run go on numbering where the finished pages end."""

    def __init__(self, folder: Path, per_page: int = PER_PAGE, thumbnail: int = 160, first_page: int = 1):
        if per_page < 1:
            raise ValueError(f"an overview page holds at least one photo, not {per_page}")
        self.folder, self.per_page, self.thumbnail = Path(folder), per_page, thumbnail
        self.page = first_page
        self.written: list[str] = []
        self._rows: list[list[Image.Image | None]] = []
        self._titles: list[list[str]] = []
        self._labels: list[str] = []

    @staticmethod
    def name(page: int) -> str:
        return f"overview-{page:03d}.png"

    def add(self, panels: Sequence[Image.Image | None], titles: Sequence[str], label: str) -> None:
        """One row; writes the page when it is full."""
        size = (self.thumbnail, self.thumbnail)
        self._rows.append([None if p is None else ImageOps.contain(p.convert("RGB"), size, Image.BILINEAR)
                           for p in panels])
        self._titles.append(list(titles))
        self._labels.append(label)
        if len(self._rows) == self.per_page:
            self.flush()

    def flush(self) -> None:
        """Write the page in the making (if it has rows) and start the next one."""
        if not self._rows:
            return
        name = self.name(self.page)
        sheet = grid(self._rows, self._titles, self._labels, panel_size=self.thumbnail, font_size=11)
        # a kill while writing never leaves a torn page
        write_atomically(self.folder / name, lambda partial: sheet.save(partial, format="PNG", compress_level=1))
        self.written.append(name)
        self.page += 1
        self._rows, self._titles, self._labels = [], [], []
