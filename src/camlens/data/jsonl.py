"""JSON-lines files written as results come: one record per line, appended and made durable
before going on, so that a killed run loses at most the line it was writing and resumes after
the last complete one. ``camlens explain``'s ``manifest.jsonl`` and ``camlens evaluate``'s
``results.jsonl`` are such files."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO

__all__ = ["read_jsonl", "append_jsonl"]


def read_jsonl(path: Path) -> list[dict]:
    """The complete records of a JSON-lines file (none if it does not exist); a torn last line
    (a run killed mid-write) is cut off the file so that appending goes on cleanly."""
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


def append_jsonl(handle: IO[str], records: Iterable[dict]) -> None:
    """Append ``records`` to an open JSON-lines file and make them durable before going on."""
    handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    handle.flush()
    os.fsync(handle.fileno())
