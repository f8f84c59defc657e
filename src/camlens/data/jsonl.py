"""JSON-lines files written as results come: one record per line, appended and made durable
before going on, so that a killed run loses at most the line it was writing and resumes after
the last complete one. ``camlens explain``'s ``manifest.jsonl`` and ``camlens evaluate``'s
``results.jsonl`` are such files; :func:`resume_records` runs any per-item job that way."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Protocol, TypeVar

from tqdm.auto import tqdm

__all__ = ["read_jsonl", "append_jsonl", "resume_records"]


class _Identified(Protocol):
    id: str


Item = TypeVar("Item", bound=_Identified)


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


def resume_records(path: str | Path, items: Sequence[Item], step: Callable[[list[Item]], Iterable[dict]], *,
                   per_step: int = 8, desc: str = "", resume: bool = True, progress: bool = True) -> list[dict]:
    """Run ``step`` over the ``items`` (anything with an ``id``) ``per_step`` at a time, appending
    the records it returns to the JSON-lines file ``path`` as each step ends, with a progress bar.
    Items whose ``id`` is already in the file are skipped, so a killed run resumes where it
    stopped; ``resume=False`` starts the file afresh. Every record ``step`` writes must carry its
    item's ``id``. Returns every record of the file."""
    if per_step < 1:
        raise ValueError(f"per_step must be at least 1, not {per_step}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not resume:
        path.unlink(missing_ok=True)
    done = {record.get("id") for record in read_jsonl(path)}
    todo = [item for item in items if item.id not in done]
    with open(path, "a", encoding="utf-8") as handle, \
            tqdm(total=len(todo), desc=desc, unit="image", disable=not progress) as bar:
        for start in range(0, len(todo), per_step):
            group = todo[start:start + per_step]
            append_jsonl(handle, step(group))
            bar.update(len(group))
    return read_jsonl(path)
