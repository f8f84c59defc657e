"""``explain`` and ``evaluate`` over a dataset on Ray Data.

The pipeline: the photos' paths (and labels and boxes) as rows → ``map_batches`` CPU tasks read
and preprocess them → an actor pool explains or evaluates them, each actor building the model
once from a *factory* (a model is not pickled per task) → the driver writes the rows as Parquet
shards as they arrive, a chunk of photos to a shard (:mod:`~camlens.distributed.shards`). The
driver writes, not the workers, so that no shared file system is needed and each shard is whole
or absent: a killed run resumes from the ids its shards hold, computing nothing twice and losing
nothing. An actor that dies is
restarted by Ray and the batch it held retried: Ray Data's own retry options for actor pools
(``max_restarts=-1``, ``max_task_retries=-1``: without limit, for system failures — a worker
process killed or lost — while an exception in camlens's code fails the run at once).

Where readers and actors reserve the same resources (one CPU each, no GPU), Ray fuses the
reading into the actors (the pixels then never pass through the object store); otherwise — with
``gpus_per_worker``, or several CPUs per worker — the readers stay CPU tasks of their own, as
many as the free CPUs allow.

``address=None`` starts a local Ray for the run (and stops it after); ``"auto"`` or
``"ray://host:10001"`` joins a running cluster.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..data import Sample
from ..evaluate.protocol import Protocol
from ..evaluate.runner import check_dataset, check_groups
from ..evaluate.summary import summarize
from ..explain import explain
from ..methods import METHODS
from ..models import LoadedModel
from .shards import RunSettings, Shards
from .workers import (
    EVALUATE_COLUMNS,
    EXPLAIN_COLUMNS,
    EvaluateWorker,
    ExplainWorker,
    chunk_rows,
    read_photos,
    sample_row,
)

__all__ = ["RayRun", "explain_on_ray", "evaluate_on_ray"]


@dataclass(frozen=True)
class RayRun:
    """What a run did: its output folder, the photos done (before and in this run), the photos
    that failed (id → reason), and the rows this run wrote."""

    out: Path
    done: int
    failures: dict[str, str]
    rows: int
    columns: dict[str, str]
    summary: object = None  # evaluate: the table of means and confidence intervals

    def table(self):
        """All of the run's rows (earlier runs' included), as a ``pyarrow.Table``."""
        return Shards(self.out / "shards", self.columns).table()


def _ray(address: str | None, workers: int, cpus: int):
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise ImportError("distributed runs need Ray: pip install 'camlens[ray]'") from error
    started = False
    if not ray.is_initialized():
        options = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False,
                   "logging_level": logging.WARNING}
        if address is None:  # a local Ray with the workers' CPUs, and one for the readers; its GPUs it finds itself
            ray.init(num_cpus=workers * cpus + 1, **options)
        else:
            ray.init(address=address, **options)
        started = True
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    return ray, started


def _run(out: Path, settings: dict, rows: list[dict], preprocessing, worker: type, worker_options: dict,
         columns: dict[str, str], *, address: str | None, workers: int, cpus_per_worker: int, gpus_per_worker: float,
         batch_size: int, resume: bool, progress: bool) -> tuple[RayRun, Shards]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shards = Shards(out / "shards", columns, lock=True)
    try:
        run = RunSettings(out, settings, resume)
        if not resume:
            shards.clear()
        todo = [row for row in rows if row["id"] not in shards.done]  # photos that failed are tried again
        written = _pipeline(shards, chunk_rows(todo, batch_size) if todo else [], preprocessing, worker,
                            {**worker_options, "threads": cpus_per_worker}, address=address, workers=workers,
                            cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker, progress=progress,
                            description="explaining on Ray" if worker is ExplainWorker else "evaluating on Ray",
                            photos=len(todo))
        asked = {row["id"] for row in rows}
        failures = {row["id"]: row["error"] for row in shards.table(["id", "error"]).to_pylist()
                    if row["error"] and row["id"] in asked}
        done = len(asked & shards.done)
        run.write({"state": "done", "photos": done, "rows_this_run": written, "failures": failures,
                   "shards": [p.name for p in shards.paths()]})
    finally:
        shards.close()
    return RayRun(out, done, failures, written, columns), shards


def _pipeline(shards: Shards, chunks: list[dict], preprocessing, worker: type, options: dict, *, address: str | None,
              workers: int, cpus_per_worker: int, gpus_per_worker: float, progress: bool, description: str,
              photos: int) -> int:
    """Runs the chunks through readers and the actor pool, writing each batch of rows as a
    shard as it arrives; the number of rows written."""
    if not chunks:
        return 0
    ray, started = _ray(address, workers, cpus_per_worker)
    quiet = logging.getLogger("ray.data")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its per-run INFO lines; camlens shows its own progress bar
    written = 0
    try:
        pipeline = (ray.data.from_items(chunks)
                    .map_batches(read_photos, fn_kwargs={"preprocessing": preprocessing}, batch_size=1, num_cpus=1)
                    .map_batches(worker, fn_constructor_kwargs=options, batch_size=1,
                                 compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus_per_worker,
                                 num_gpus=gpus_per_worker or None))
        with tqdm(total=photos, desc=description, unit="photo", file=sys.stderr, disable=not progress) as bar:
            for batch in pipeline.iter_batches(batch_size=None, batch_format="pyarrow"):
                for packed in batch.column("rows").to_pylist():  # a chunk's rows, whole (see workers._packed)
                    found = json.loads(packed)
                    if found:
                        shards.write(found)
                        written += len(found)
                        bar.update(len({row["id"] for row in found}))
    finally:
        quiet.setLevel(level)
        if started:
            ray.shutdown()
    return written


def _checked_layer(loaded: LoadedModel, layer: str, methods: Sequence[str], target) -> str:
    """The layer ``layer`` names (``"auto"`` resolved), found by explaining a blank image on the
    driver, so that a layer, or a gradient method, the model cannot do is an error before
    anything is removed or started — not a traceback from a worker. The perturbation methods are
    left to the workers: one of them can cost thousands of passes of the network."""
    blank = torch.zeros(1, 3, *loaded.preprocessing.size, dtype=getattr(torch, loaded.preprocessing.dtype))
    cheap = tuple(m for m in methods if METHODS[m].kind != "perturbation") or tuple(methods[:1])
    return explain(loaded.model, loaded.inputs(blank), layer=loaded.layer if layer == "auto" else layer,
                   methods=cheap, target=target).layer


def explain_on_ray(factory: Callable[[], LoadedModel], images: Sequence[str | Path], out: str | Path, *,
                   methods: Sequence[str] = ("gradcam",), target: Sequence[str] = ("top1",), layer: str = "auto",
                   address: str | None = None, workers: int = 1, cpus_per_worker: int = 1, gpus_per_worker: float = 0,
                   batch_size: int = 8, resume: bool = True, progress: bool = True,
                   settings: dict | None = None, loaded: LoadedModel | None = None) -> RayRun:
    """Explain ``images`` (files) on Ray: ``workers`` actors each build the model with
    ``factory()`` (e.g. ``functools.partial(camlens.load, "efficientnet-lite0")``) and explain
    batches of ``batch_size`` photos for ``target`` (``topK``, or class names or indices) with
    ``methods`` at ``layer``, with ``cpus_per_worker`` threads each (the numbers equal a single
    process's to the last bit for the same batches and thread count; across thread counts they
    differ in float32's last bits). Rows — one per (image, class, method): ``id`` (the file), ``class``,
    ``class_name``, ``score``, ``probability``, ``method``, ``layer``, ``map`` (float16 at the
    layer's resolution, flattened; ``map_shape``), ``worker``, ``error`` — go to
    ``out/shards/*.parquet``; ``out/run.json`` records the settings and the outcome. A run in
    ``out`` is resumed (``resume=False`` starts over). ``settings``: more to record (the model's
    name, for one). ``loaded``: what ``factory()`` gives, where the caller has built it already
    (the driver then does not build it again)."""
    loaded = loaded or factory()  # the driver's copy: preprocessing, names, the checks
    layer = _checked_layer(loaded, layer, methods, loaded.class_target(list(target)))
    rows = [{"id": path, "path": str(Path(path).resolve())} for path in dict.fromkeys(str(p) for p in images)]
    recorded = {**(settings or {}), "kind": "explain", "model": loaded.name, "layer": layer, "methods": list(methods),
                "target": list(target)}
    options = {"factory": factory, "layer": layer, "methods": tuple(methods), "target": tuple(target),
               "device": "cuda" if gpus_per_worker else "cpu"}
    done, _ = _run(Path(out), recorded, rows, loaded.preprocessing, ExplainWorker, options, EXPLAIN_COLUMNS,
                   address=address, workers=workers, cpus_per_worker=cpus_per_worker,
                   gpus_per_worker=gpus_per_worker, batch_size=batch_size, resume=resume, progress=progress)
    return done


def evaluate_on_ray(factory: Callable[[], LoadedModel], samples: Sequence[Sample], out: str | Path, *,
                    methods: Sequence[str], groups: Sequence[str] = ("faithfulness", "axioms"),
                    protocol: Protocol = Protocol(), layer: str | None = None, address: str | None = None,
                    workers: int = 1, cpus_per_worker: int = 1, gpus_per_worker: float = 0, images_per_step: int = 8,
                    batch_size: int | None = None, resume: bool = True, progress: bool = True,
                    settings: dict | None = None, loaded: LoadedModel | None = None) -> RayRun:
    """:func:`camlens.evaluate.evaluate` on Ray: the same records (``record``, the JSON of the
    single-process record), one row per (image, method), in ``out/shards/*.parquet``. Images
    are explained ``images_per_step`` together and the metrics' forward passes go ``batch_size``
    images at a time, as in :func:`~camlens.evaluate.evaluate`. ``loaded``: as for
    :func:`explain_on_ray`."""
    loaded = loaded or factory()  # the driver's copy: preprocessing, names, the checks
    check_groups(groups)
    check_dataset(samples, groups)
    layer = _checked_layer(loaded, layer or "auto", methods, None)
    rows = [sample_row(sample) for sample in samples]
    recorded = {**(settings or {}), "kind": "evaluate", "model": loaded.name, "layer": layer, "methods": list(methods),
                "groups": list(groups), "protocol": dataclasses.asdict(protocol)}
    options = {"factory": factory, "methods": tuple(methods), "groups": tuple(groups), "protocol": protocol,
               "layer": layer, "batch_size": batch_size, "device": "cuda" if gpus_per_worker else "cpu"}
    done, shards = _run(Path(out), recorded, rows, loaded.preprocessing, EvaluateWorker, options, EVALUATE_COLUMNS,
                        address=address, workers=workers, cpus_per_worker=cpus_per_worker,
                        gpus_per_worker=gpus_per_worker, batch_size=images_per_step, resume=resume, progress=progress)
    records = [json.loads(text) for text in shards.table(["record"]).column("record").to_pylist() if text]
    summary = summarize(records, methods, ids=[sample.id for sample in samples])
    summary.write(Path(out))  # summary.md, .csv, .json and curves.png, as a single process writes them
    return dataclasses.replace(done, summary=summary)
