"""A distributed run's output: Parquet shards written whole, and the run's settings.

Each shard is written to a hidden temporary file and renamed into place, so a shard is either
all there or not there: a run killed mid-write leaves a temporary file, which the next run
removes, and never a shard cut short. The images a run has done are the ids in its shards; a
resumed run skips them, so no row is computed twice or lost."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..data.files import write_atomically

__all__ = ["Shards", "RunSettings", "SettingsMismatch", "FolderInUse"]


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as error:  # pragma: no cover - comes with the extra
        raise ImportError("distributed runs write Parquet with pyarrow: pip install 'camlens[ray]'") from error
    return pyarrow


def _schema(columns: Mapping[str, str]):
    pyarrow = _pyarrow()
    types = {"string": pyarrow.string(), "int64": pyarrow.int64(), "float64": pyarrow.float64(),
             "list<float16>": pyarrow.list_(pyarrow.float16()), "list<int64>": pyarrow.list_(pyarrow.int64()),
             "map<string, float64>": pyarrow.map_(pyarrow.string(), pyarrow.float64())}
    return pyarrow.schema([(name, types[kind]) for name, kind in columns.items()])


class FolderInUse(RuntimeError):
    """Another run is writing in the same output folder."""


class Shards:
    """The shards under ``folder`` (``part-RUN-NNNNNN.parquet``) with ``columns`` (name → Arrow
    type): written by :meth:`write`, read back by :meth:`table`.

    ``done`` holds the ids of images with rows; ``failed`` those whose only rows are failures
    (``error`` set): a resumed run tries them again, and once an image has rows its earlier
    failure rows are left out of :meth:`table`. One run at a time writes in a folder: a second
    one is refused (:class:`FolderInUse`) while the first holds its lock."""

    def __init__(self, folder: str | Path, columns: Mapping[str, str], lock: bool = False):
        self.schema = _schema(columns)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = self._take_lock() if lock else None
        if lock:  # only the run holding the lock clears what a killed run left half written
            for partial in self.folder.glob(".part-*.partial"):
                partial.unlink(missing_ok=True)
        self.run = uuid.uuid4().hex[:8]
        self.count = 0
        self.done: set[str] = set()
        self.failed: set[str] = set()
        for row in self.table(["id", "error"], superseded=True).to_pylist():
            (self.failed if row["error"] else self.done).add(row["id"])
        self.failed -= self.done

    def _take_lock(self):
        import fcntl

        handle = open(self.folder / ".lock", "w")  # noqa: SIM115 - held for the run, closed by close()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise FolderInUse(f"another run is writing in {self.folder.parent}; wait for it, or give another --out") \
                from None
        return handle

    def clear(self) -> None:
        """Remove every shard: the run starts over."""
        for path in self.paths():
            path.unlink()
        self.done.clear()
        self.failed.clear()

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def paths(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.parquet"))

    def write(self, rows: Sequence[Mapping]) -> Path | None:
        """Write ``rows`` (dicts of the same keys) as one shard, whole or not at all."""
        if not rows:
            return None
        pyarrow = _pyarrow()
        table = pyarrow.Table.from_pylist(list(rows), schema=self.schema)
        self.count += 1
        path = write_atomically(self.folder / f"part-{self.run}-{self.count:06d}.parquet",
                                lambda partial: pyarrow.parquet.write_table(table, partial))
        for row in rows:
            (self.failed if row.get("error") else self.done).add(str(row["id"]))
        self.failed -= self.done
        return path

    def table(self, columns: Sequence[str] | None = None, superseded: bool = False):
        """Every shard's rows (or only ``columns``) as one ``pyarrow.Table`` (``.to_pandas()``
        for a data frame), without the failure rows of images that have rows since
        (``superseded=True`` keeps them) and with one failure row per image that still fails."""
        pyarrow = _pyarrow()
        wanted = None if columns is None else list(dict.fromkeys([*columns, "id", "error"]))
        tables = [pyarrow.parquet.read_table(p, columns=wanted) for p in self.paths()]
        if not tables:
            schema = self.schema if columns is None else pyarrow.schema([self.schema.field(c) for c in columns])
            return schema.empty_table()
        table = pyarrow.concat_tables(tables)
        if not superseded:
            ids, errors = table.column("id").to_pylist(), table.column("error").to_pylist()
            good = {i for i, error in zip(ids, errors) if not error}
            last = {i: row for row, (i, error) in enumerate(zip(ids, errors)) if error}  # the latest failure
            keep = [not error or (i not in good and last[i] == row) for row, (i, error) in enumerate(zip(ids, errors))]
            table = table.filter(pyarrow.array(keep))
        return table if columns is None else table.select(list(columns))


class SettingsMismatch(ValueError):
    """A resumed run asked for other settings than the run in its folder."""


class RunSettings:
    """``run.json``: what a run computes (model, layer, methods, targets, ...), written when it
    starts and checked when it resumes — rows made under other settings must not mix."""

    def __init__(self, out: str | Path, settings: Mapping, resume: bool):
        self.path = Path(out) / "run.json"
        self.settings = dict(settings)
        if self.path.exists():
            recorded = json.loads(self.path.read_text(encoding="utf-8"))
            if resume and recorded.get("settings") != json.loads(json.dumps(self.settings)):
                changed = sorted(k for k in {**recorded.get("settings", {}), **self.settings}
                                 if recorded.get("settings", {}).get(k) != json.loads(json.dumps(self.settings.get(k))))
                raise SettingsMismatch(f"{out} holds a run with other settings ({', '.join(changed)}); resume it with "
                                       "the same ones, or start over in another folder")
        self.write({"state": "running"})

    def write(self, extra: Mapping) -> None:
        text = json.dumps({"settings": self.settings, **extra}, indent=2)
        write_atomically(self.path, lambda partial: partial.write_text(text, encoding="utf-8"))
