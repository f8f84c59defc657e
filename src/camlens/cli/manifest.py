"""``manifest.jsonl``: what ``camlens explain`` did, written as it goes — a first line with the
run's settings, then one line per photo explained or failed — so that a killed run keeps every
photo it finished and ``--resume`` goes on from there. ``manifest.json`` gathers it when the run
ends."""

from __future__ import annotations

import json
from pathlib import Path

from ..data import append_jsonl, read_jsonl
from .common import UsageError

__all__ = ["RunManifest"]

# settings recorded since a release, with what a run that did not record them used
_RECORDED_LATER = {"fit": "crop"}


class RunManifest:
    """The run log under ``out``. ``settings`` are what defines the results (model, weights,
    layer, methods, what is explained, picture options): resuming a run made with other settings
    is refused with what differs. ``info`` is recorded but not compared (date, versions, device).

    Without ``resume`` an earlier log is replaced. With it, the photos it lists as explained are
    in :attr:`done` (file → record); those that failed are tried again."""

    def __init__(self, out: Path, settings: dict, info: dict, resume: bool):
        self.path = out / "manifest.jsonl"
        self.settings = json.loads(json.dumps(settings))  # as it reads back: tuples become lists
        lines = read_jsonl(self.path) if resume else []
        if lines:
            previous = lines[0].get("run", {}).get("settings")
            if isinstance(previous, dict):
                previous = {key: value for key, value in _RECORDED_LATER.items() if key in self.settings} | previous
            if previous != self.settings:
                raise UsageError(f"{out} holds a run with other settings ({self._differences(previous)}); "
                                 "give another --out, or leave out --resume to start afresh")
        elif resume:
            print(f"camlens: nothing to resume in {out}/: starting afresh", flush=True)
        self.done: dict[str, dict] = {line["image"]["file"]: line["image"] for line in lines if "image" in line}
        self._failed: dict[str, str] = {}
        self._handle = open(self.path, "a" if lines else "w", encoding="utf-8")
        if not lines:
            append_jsonl(self._handle, [{"run": {"settings": self.settings, **info}}])
        self.info = info

    def _differences(self, previous: dict | None) -> str:
        if not isinstance(previous, dict):
            return "its manifest.jsonl has no settings"
        keys = sorted(set(previous) | set(self.settings))
        return "; ".join(f"{key}: {previous.get(key)!r} then, {self.settings.get(key)!r} now"
                         for key in keys if previous.get(key) != self.settings.get(key))

    def add_image(self, record: dict) -> None:
        append_jsonl(self._handle, [{"image": record}])
        self.done[record["file"]] = record
        self._failed.pop(record["file"], None)

    def add_failure(self, file: str, reason: str) -> None:
        append_jsonl(self._handle, [{"failure": {"file": file, "reason": reason}}])
        self._failed[file] = reason

    @property
    def failures(self) -> list[tuple[str, str]]:
        """The files that failed in this run, with their reasons."""
        return list(self._failed.items())

    def abandon(self) -> None:
        """Stop logging without writing ``manifest.json`` (the run is given up)."""
        self._handle.close()

    def close(self, extra: dict) -> Path:
        """Stop logging and write ``manifest.json``: the settings, ``info``, ``extra``, every
        photo explained (this run's and the resumed ones') and this run's failures."""
        self._handle.close()
        manifest = {**self.settings, **self.info, **extra, "images": list(self.done.values()),
                    "failures": [{"file": f, "reason": r} for f, r in self._failed.items()]}
        path = self.path.with_suffix(".json")
        path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path
