"""Files written whole or not at all: a reader (or a resumed run) never meets half of one."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(partial)`` writes the file at a hidden sibling (``.NAME.PID.partial``: two
    processes writing one file do not share it), which then replaces ``path`` in one step.
    A kill while writing leaves ``path`` as it was. Creates the folder; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    write(partial)
    partial.replace(path)
    return path
