"""Which files to read: folders (searched recursively), glob patterns and CSV lists of images,
expanded to paths without opening a single image, so that a folder of any size streams."""

from __future__ import annotations

import csv
import glob
from collections.abc import Iterable
from pathlib import Path

from .datasets import IMAGE_COLUMNS, find_column

__all__ = ["IMAGE_SUFFIXES", "image_paths", "named_image_paths"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jfif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
_GLOB_CHARACTERS = frozenset("*?[")


def _csv_paths(path: Path) -> list[tuple[Path, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        column = find_column(reader.fieldnames or [], IMAGE_COLUMNS, "image", path)
        names = dict.fromkeys(row[column] for row in reader if row[column])  # a boxes CSV repeats its images
    return [(path.parent / name, Path(name).name if Path(name).is_absolute() else name) for name in names]


def _pattern_root(pattern: str) -> Path:
    """The folder a glob pattern starts from: its parts before the first with a wildcard."""
    parts = Path(pattern).parts
    first = next(i for i, part in enumerate(parts) if _GLOB_CHARACTERS & set(part))
    return Path(*parts[:first]) if first else Path(".")


def named_image_paths(sources: Iterable[str | Path]) -> list[tuple[Path, str]]:
    """The image files named by ``sources`` (see :func:`image_paths`), each with its name
    relative to where it was found: ``sub/a.jpg`` for a file under a folder given as a source
    (or under a pattern's fixed folder), the name as written in a CSV list, the file name for a
    file given on its own. Writing outputs under these names mirrors the input tree."""
    found: dict[Path, str] = {}
    for source in sources:
        path = Path(source)
        if path.is_dir():
            matches = [(p, p.relative_to(path).as_posix()) for p in
                       sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())]
        elif path.suffix.lower() == ".csv" and path.is_file():
            matches = _csv_paths(path)
        elif not path.exists() and _GLOB_CHARACTERS & set(str(source)):
            root = _pattern_root(str(source))
            files = [Path(p) for p in sorted(glob.glob(str(source), recursive=True)) if Path(p).is_file()]
            matches = [(p, p.relative_to(root).as_posix()) for p in files] or [(path, path.name)]
        else:
            matches = [(path, path.name)]
        for match, name in matches:
            found.setdefault(match, name)
    return list(found.items())


def image_paths(sources: Iterable[str | Path]) -> list[Path]:
    """The image files named by ``sources``, in order, each once:

    - a folder: its image files (by suffix: :data:`IMAGE_SUFFIXES`), recursively, sorted;
    - a ``.csv`` file: the files of its image column (``file``, ``filename``, ``image`` or
      ``path``), relative to the CSV's folder unless absolute — so an evaluation dataset's
      ``labels.csv`` or ``annotations.csv`` is also a list of photos;
    - a pattern with ``*``, ``?`` or ``[`` that names no file: the files it matches (``**``
      descends into folders), sorted; a pattern matching nothing is kept as is, so that reading
      it reports "no such file";
    - anything else: itself (a missing or unreadable file is reported when it is read).
    """
    return [path for path, _ in named_image_paths(sources)]
