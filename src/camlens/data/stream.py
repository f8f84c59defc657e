"""Photos streamed in batches: decoded and preprocessed by background threads a few batches
ahead of the model, so that memory holds a bounded number of photos whatever the folder's size.

Each photo is kept only as a display copy whose longest side is at most ``max_side`` pixels
(pictures are made from it), next to the model's input computed from the full-resolution file.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from .geometry import Box
from .images import ImageReadError, fit_within, read_image
from .preprocessing import Preprocessing

__all__ = ["Photo", "PhotoBatch", "stream_photos", "DISPLAY_MAX_SIDE"]

DISPLAY_MAX_SIDE = 2048


@dataclass(frozen=True)
class Photo:
    """One photo as read: its ``path``, the file's ``size`` (width, height), a display copy
    ``image`` that is the file scaled by ``scale`` (≤ 1), and ``crop_box``, the region of the
    *file* the model saw (:meth:`Preprocessing.crop_box`)."""

    path: Path
    size: tuple[int, int]
    image: Image.Image
    scale: float
    crop_box: Box

    @classmethod
    def of(cls, image: Image.Image, path: Path, preprocessing: Preprocessing,
           max_side: int | None = DISPLAY_MAX_SIDE) -> tuple[torch.Tensor, Photo]:
        """A photo read (``path`` names it) → the model's input tensor (C, H, W) and the
        :class:`Photo` with its display copy, at most ``max_side`` pixels on its longest side."""
        display, scale = fit_within(image, max_side)
        return preprocessing(image), cls(path, image.size, display, scale, preprocessing.crop_box(image.size))

    @property
    def display_box(self) -> Box:
        """The model's crop in the display copy's pixels."""
        return tuple(v * self.scale for v in self.crop_box)


@dataclass
class PhotoBatch:
    """The model inputs ``tensor`` (B, C, H, W) of ``photos``, and the files in this stretch
    of the input that could not be read (``failures``)."""

    tensor: torch.Tensor
    photos: list[Photo]
    failures: list[ImageReadError] = field(default_factory=list)


def _read(path: Path, preprocessing: Preprocessing, max_side: int | None) -> tuple[torch.Tensor, Photo] | ImageReadError:
    try:
        image = read_image(path)
    except ImageReadError as error:
        return error
    return Photo.of(image, path, preprocessing, max_side)


def stream_photos(paths: Iterable[Path], preprocessing: Preprocessing, batch_size: int = 8, workers: int = 2,
                  max_side: int | None = DISPLAY_MAX_SIDE) -> Iterator[PhotoBatch]:
    """Batches of ``batch_size`` photos from ``paths`` in order, read by ``workers`` threads
    (0: in the calling thread) about two batches ahead of the consumer. A file that cannot be
    read is reported in the ``failures`` of the batch it fell in and the others go on, so the
    last batch may hold fewer photos, or none."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if workers <= 0:
        yield from _batches((_read(path, preprocessing, max_side) for path in paths), batch_size)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="camlens-read") as pool:
        pending: deque[Future] = deque()

        def results() -> Iterator[tuple[torch.Tensor, Photo] | ImageReadError]:
            for path in paths:
                pending.append(pool.submit(_read, path, preprocessing, max_side))
                if len(pending) > 2 * batch_size + workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

        try:
            yield from _batches(results(), batch_size)
        finally:  # a consumer that stops early (an error, a break) does not wait for the rest
            for future in pending:
                future.cancel()


def _batches(results: Iterable[tuple[torch.Tensor, Photo] | ImageReadError], batch_size: int) -> Iterator[PhotoBatch]:
    tensors, photos, failures = [], [], []
    for result in results:
        if isinstance(result, ImageReadError):
            failures.append(result)
            continue
        tensors.append(result[0])
        photos.append(result[1])
        if len(photos) == batch_size:
            yield PhotoBatch(torch.stack(tensors), photos, failures)
            tensors, photos, failures = [], [], []
    if photos or failures:
        yield PhotoBatch(torch.stack(tensors) if tensors else torch.empty(0), photos, failures)
