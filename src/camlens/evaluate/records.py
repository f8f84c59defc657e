"""The per-image results file, ``results.jsonl``: one JSON line per (image, method), appended and
flushed image by image, so that a killed run loses at most the image it was on and resumes there."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO

__all__ = ["read_results", "append_results"]


def read_results(path: Path) -> list[dict]:
    """The complete records of a results file; a torn last line (a run killed mid-write) is
    cut off the file so that appending goes on cleanly."""
    if not path.exists():
        return []
    records, good = [], 0
    with open(path, "rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
            good += len(line)
    if good != path.stat().st_size:
        with open(path, "r+b") as handle:
            handle.truncate(good)
    return records


def append_results(handle: IO[str], records: Iterable[dict]) -> None:
    """Append ``records`` to an open results file and make them durable before going on."""
    handle.write("".join(json.dumps(r) + "\n" for r in records))
    handle.flush()
    os.fsync(handle.fileno())
