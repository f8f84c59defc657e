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

__all__ = ["Shards", "RunSettings", "SettingsMismatch"]


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
             "list<float16>": pyarrow.list_(pyarrow.float16()), "list<int64>": pyarrow.list_(pyarrow.int64())}
    return pyarrow.schema([(name, types[kind]) for name, kind in columns.items()])


class Shards:
    """The shards under ``folder`` (``part-RUN-NNNNNN.parquet``) with ``columns`` (name → Arrow
    type): written by :meth:`write`, read back by :meth:`table`; ``done`` holds the image ids
    they hold."""

    def __init__(self, folder: str | Path, columns: Mapping[str, str]):
        self.schema = _schema(columns)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for partial in self.folder.glob(".part-*.partial"):  # a write a killed run left half done
            partial.unlink(missing_ok=True)
        self.run = uuid.uuid4().hex[:8]
        self.count = 0
        self.done: set[str] = set()
        pyarrow = _pyarrow()
        for path in self.paths():
            self.done.update(pyarrow.parquet.read_table(path, columns=["id"]).column("id").to_pylist())

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
        self.done.update(str(row["id"]) for row in rows)
        return path

    def table(self, columns: Sequence[str] | None = None):
        """Every shard's rows (or only ``columns``) as one ``pyarrow.Table`` (``.to_pandas()``
        for a data frame)."""
        pyarrow = _pyarrow()
        tables = [pyarrow.parquet.read_table(p, columns=columns) for p in self.paths()]
        if tables:
            return pyarrow.concat_tables(tables)
        schema = self.schema if columns is None else pyarrow.schema([self.schema.field(c) for c in columns])
        return schema.empty_table()


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
