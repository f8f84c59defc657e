"""JSON-lines files written as results come: one record per line, appended and made durable
before going on, so that a killed run loses at most the line it was writing and resumes after
the last complete one. ``camlens explain``'s ``manifest.jsonl`` and ``camlens evaluate``'s
``results.jsonl`` are such files; :func:`resume_records` runs any per-item job that way."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol, TypeVar

from tqdm.auto import tqdm

from .files import write_atomically

__all__ = ["read_jsonl", "append_jsonl", "resume_records", "read_records", "RunMismatch"]


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


class RunMismatch(ValueError):
    """A results folder holds results of a run with other settings: resuming would mix the two."""


_RESTART = "start afresh with --restart (its results are discarded) or give another --out"


def _is_marker(line: dict) -> bool:
    return len(line) == 1 and "done" in line


def _settle(path: Path, settings: Mapping, anything_done: bool) -> None:
    """Record ``settings`` at ``path``; where steps are done under other settings, refuse."""
    settings = json.loads(json.dumps(settings))
    if anything_done and path.exists():
        try:
            earlier = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RunMismatch(f"{path} cannot be read, so the run in {path.parent} cannot be resumed safely: "
                              f"{_RESTART}") from None
        changed = sorted(k for k in set(earlier) | set(settings) if earlier.get(k) != settings.get(k))
        if changed:
            raise RunMismatch(f"{path.parent} holds results of another run ({', '.join(changed)} differ): resume "
                              f"with the same settings, or {_RESTART}")
    write_atomically(path, lambda partial: partial.write_text(json.dumps(settings, indent=1), encoding="utf-8"))


def _steps_done(path: Path, repair: bool = True) -> tuple[list[dict], set[str]]:
    """The records of the steps the file holds whole, and their items' ids. Each step ends with a
    ``{"done": [ids]}`` line appended with its records; a step cut short (records there, marker
    not) is cut off the file (``repair``), so that it is done again. A file of records and no
    marker at all was written by an older camlens, which did not mark its steps: refused."""
    lines = read_jsonl(path)
    markers = [k for k, line in enumerate(lines) if _is_marker(line)]
    if lines and not markers:
        raise RunMismatch(f"{path} was written by an older camlens (its steps are not marked), so it cannot be "
                          f"resumed safely: {_RESTART}")
    last = markers[-1] if markers else -1
    if repair and last < len(lines) - 1:   # cut in place, just past the last marker's line
        with open(path, "r+b") as handle:
            offset = sum(len(handle.readline()) for _ in range(last + 1))
            handle.truncate(offset)
    lines = lines[: last + 1]
    done = {i for line in lines if _is_marker(line) for i in line["done"]}
    return [line for line in lines if not _is_marker(line)], done


def read_records(path: str | Path) -> list[dict]:
    """The records of a file that :func:`resume_records` writes, without its step markers (and
    without a step cut short); the file is not changed."""
    return _steps_done(Path(path), repair=False)[0] if Path(path).exists() else []


def resume_records(path: str | Path, items: Sequence[Item], step: Callable[[list[Item]], Iterable[dict]], *,
                   settings: Mapping | None = None, per_step: int = 8, desc: str = "", resume: bool = True,
                   progress: bool = True) -> list[dict]:
    """Run ``step`` over the ``items`` (anything with a distinct, non-empty ``id``) ``per_step`` at
    a time, appending the records it returns to the JSON-lines file ``path`` as each step ends,
    with a progress bar. A step's records and a line naming its items are written together, so
    a killed run resumes after its last whole step, skipping the items already done
    (:func:`read_records` reads the file without the markers); ``resume=False`` starts the file
    afresh. ``settings`` (anything that changes the records: the
    model, its weights, the method, …) are kept beside the file (``NAME.settings.json``), and a
    run whose settings differ from the file's refuses to resume (:class:`RunMismatch`). Every
    record ``step`` writes must carry its item's ``id``. Returns the records of ``items``."""
    if per_step < 1:
        raise ValueError(f"per_step must be at least 1, not {per_step}")
    ids = [item.id for item in items]
    if any(not isinstance(i, str) or not i for i in ids):
        raise ValueError("every item needs a non-empty id: the results are kept by id")
    if len(set(ids)) < len(ids):
        twice = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"item ids must be distinct: {twice!r} is there more than once")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recorded = path.with_name(f"{path.stem}.settings.json")
    if not resume:
        path.unlink(missing_ok=True)
        recorded.unlink(missing_ok=True)
    _, done = _steps_done(path)
    _settle(recorded, settings or {}, anything_done=bool(done))
    todo = [item for item in items if item.id not in done]
    with open(path, "a", encoding="utf-8") as handle, \
            tqdm(total=len(todo), desc=desc, unit="image", disable=not progress) as bar:
        for start in range(0, len(todo), per_step):
            group = todo[start:start + per_step]
            append_jsonl(handle, [*step(group), {"done": [item.id for item in group]}])
            bar.update(len(group))
    wanted = set(ids)
    return [record for record in _steps_done(path)[0] if record.get("id") in wanted]
