"""What runs on Ray's workers: reading and preprocessing photos (CPU tasks), and explaining or
evaluating them (actors that build the model once, from a factory).

Batches are dicts of numpy columns, as ``Dataset.map_batches`` passes them. A photo that cannot
be read keeps its row, with its reason in ``error``; the actors turn it into a failure row and
go on. Each output row names the process that made it (``worker``), which shows a retried batch."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..data import ImageReadError, Sample, read_image
from ..data.preprocessing import Preprocessing
from ..engine.modelstate import resolve_device
from ..evaluate.protocol import Protocol
from ..evaluate.runner import evaluator
from ..explain import explain
from ..models import LoadedModel
from ..models.loaded import row_probability

__all__ = ["read_photos", "chunk_rows", "ExplainWorker", "EvaluateWorker", "sample_row", "sample_of", "EXPLAIN_COLUMNS",
           "EVALUATE_COLUMNS"]


def sample_row(sample: Sample) -> dict:
    """A :class:`Sample` as a row of plain values (Ray Data carries it as JSON)."""
    path = str(Path(sample.path).resolve())  # a worker's working folder may be another
    return {"id": sample.id, "path": path, "sample": json.dumps(
        {"path": path, "label": sample.label, "boxes": [[c, list(b)] for c, b in sample.boxes],
         "mask": str(sample.mask) if sample.mask else None, "id": sample.id})}


def sample_of(text: str) -> Sample:
    found = json.loads(text)
    return Sample(Path(found["path"]), found["label"], tuple((c, tuple(b)) for c, b in found["boxes"]),
                  Path(found["mask"]) if found["mask"] else None, found["id"])


def read_photos(batch: dict[str, np.ndarray], preprocessing: Preprocessing) -> dict[str, np.ndarray]:
    """Chunks of photos (a row per chunk: ``path``, a list of files) → the same chunks with
    ``pixels`` (their model inputs, B×C×H×W float32), the files' ``width`` and ``height``, and
    ``error`` (empty where the photo was read; a blank input stands in for one that was not).

    A chunk is the batch the model will explain, fixed by the driver: explaining the same photos
    together as a single process does gives the same numbers to the last bit, which batches Ray
    formed on its own would not."""
    blank = np.zeros((3, *preprocessing.size), dtype=np.float32)
    chunks: dict[str, list] = {"pixels": [], "width": [], "height": [], "error": []}
    for paths in batch["path"]:
        pixels, widths, heights, errors = [], [], [], []
        for path in paths:
            try:
                image = read_image(str(path))
            except ImageReadError as error:
                pixels.append(blank)
                widths.append(0)
                heights.append(0)
                errors.append(str(error))
                continue
            pixels.append(preprocessing(image).numpy())
            widths.append(image.width)
            heights.append(image.height)
            errors.append("")
        for column, values in zip(chunks, (np.stack(pixels), widths, heights, errors)):
            chunks[column].append(values)
    return {**batch, **{column: _column(values) for column, values in chunks.items()}}


def _column(values: list) -> np.ndarray:
    """A column of per-chunk values (lists or arrays of different lengths) as Ray Data takes it."""
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def chunk_rows(rows: Sequence[dict], size: int) -> list[dict]:
    """Rows of photos (all with the same keys) → rows of chunks of ``size`` photos, each column a list."""
    if any(row.keys() != rows[0].keys() for row in rows):
        raise ValueError("chunk_rows needs rows with the same keys")
    return [{key: [row[key] for row in rows[start:start + size]] for key in rows[0]}
            for start in range(0, len(rows), size)]


class _ModelWorker:
    """An actor's model: built once by ``factory`` (a picklable callable returning a
    :class:`LoadedModel`), on ``device``, with ``threads`` CPU threads (the CPUs the actor
    reserved: a float32 sum's order, and so its last bits, depends on the thread count)."""

    def __init__(self, factory: Callable[[], LoadedModel], device: str, threads: int = 1):
        torch.set_num_threads(threads)
        self.device = resolve_device(device)
        loaded = factory()
        loaded.model.to(self.device)
        self.loaded = loaded
        self.pid = os.getpid()

    def _images(self, chunk: dict, ok: Sequence[int]) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.asarray(chunk["pixels"])[ok])).to(self.device)


def _chunks(batch: dict[str, np.ndarray]) -> list[dict]:
    """The chunks of a batch of chunk rows, each a dict of its columns."""
    return [{column: values[i] for column, values in batch.items()} for i in range(len(batch["path"]))]


# the shards' columns and their Arrow types (pyarrow's names)
EXPLAIN_COLUMNS = {"id": "string", "file": "string", "class": "int64", "class_name": "string", "score": "float64",
                   "probability": "float64", "method": "string", "layer": "string", "map": "list<float16>",
                   "map_shape": "list<int64>", "worker": "int64", "error": "string"}
EVALUATE_COLUMNS = {"id": "string", "method": "string", "class": "int64", "predicted": "int64",
                    "metrics": "map<string, float64>", "record": "string", "worker": "int64", "error": "string"}


class ExplainWorker(_ModelWorker):
    """Explains a batch of read photos: one row per (image, class, method) with the class, its
    score and probability, and the map at the layer's resolution (float16, flattened, with its
    shape); one row per photo that could not be read, with its reason."""

    def __init__(self, factory: Callable[[], LoadedModel], layer: str, methods: Sequence[str], target: Sequence[str],
                 device: str = "cpu", threads: int = 1):
        super().__init__(factory, device, threads)
        self.layer = self.loaded.layer if layer == "auto" else layer
        self.methods = tuple(methods)
        self.target = self.loaded.class_target(list(target))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        chunks = []
        for chunk in _chunks(batch):
            rows = {column: [] for column in EXPLAIN_COLUMNS}
            self._explain(chunk, rows)
            chunks.append(rows)
        return _packed(chunks)

    def _explain(self, batch: dict, rows: dict[str, list]) -> None:
        def add(**values) -> None:
            for column in EXPLAIN_COLUMNS:
                rows[column].append(values.get(column))

        ok = [i for i, error in enumerate(batch["error"]) if not error]
        for i, error in enumerate(batch["error"]):
            if error:
                add(id=str(batch["id"][i]), file=str(batch["path"][i]), worker=self.pid, error=str(error))
        if not ok:
            return
        explanation = explain(self.loaded.model, self._images(batch, ok), layer=self.layer, methods=self.methods,
                              target=self.target)
        self.layer = explanation.layer  # "auto" resolved once, on the first batch
        for row in range(len(explanation)):
            offset = int(explanation.image_index[row])
            i = ok[offset]
            _, probabilities = self.loaded.predictions(explanation.outputs, offset)
            cls = int(explanation.targets[row])
            for method in self.methods:
                layer_map = explanation.layer_maps[method][row].detach().cpu()
                add(id=str(batch["id"][i]), file=str(batch["path"][i]), **{"class": cls},
                    class_name=self.loaded.class_names[cls] if cls >= 0 else "target",
                    score=float(explanation.scores[row]), probability=row_probability(probabilities, cls),
                    method=method, layer=explanation.layer, map=layer_map.half().flatten().tolist(),
                    map_shape=list(layer_map.shape), worker=self.pid, error=None)


class EvaluateWorker(_ModelWorker):
    """Evaluates a batch of read photos with :func:`camlens.evaluate.runner.evaluator`: one row
    per (image, method) with its true and predicted class, its ``metrics`` (name → value) and the
    whole single-process record (``record``, JSON, curves included)."""

    def __init__(self, factory: Callable[[], LoadedModel], methods: Sequence[str], groups: Sequence[str],
                 protocol: Protocol, layer: str | None = None, batch_size: int | None = None, device: str = "cpu",
                 threads: int = 1):
        super().__init__(factory, device, threads)
        self.step = evaluator(self.loaded, methods, groups=groups, layer=layer, protocol=protocol,
                              batch_size=batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        chunks = []
        for chunk in _chunks(batch):
            records = []
            samples = [sample_of(text) for text in chunk["sample"]]
            ok = [i for i, error in enumerate(chunk["error"]) if not error]
            for i, error in enumerate(chunk["error"]):
                if error:
                    records += self.step.failed(samples[i], str(error))
            if ok:
                sizes = [(int(chunk["width"][i]), int(chunk["height"][i])) for i in ok]
                records += self.step.measure([samples[i] for i in ok], self._images(chunk, ok), sizes)
            chunks.append({"id": [r["id"] for r in records], "method": [r["method"] for r in records],
                           "class": [r.get("label") for r in records],
                           "predicted": [r.get("predicted") for r in records],
                           "metrics": [_metrics(r) for r in records], "record": [json.dumps(r) for r in records],
                           "worker": [self.pid] * len(records), "error": [r.get("error") for r in records]})
        return _packed(chunks)


def _packed(chunks: list[dict[str, list]]) -> dict[str, list]:
    """Each chunk's rows (columns of lists) as one JSON text: one Ray row per chunk, so that no
    block boundary can split a photo's rows, and the driver writes each chunk as a shard whole."""
    return {"rows": [json.dumps([dict(zip(columns, values)) for values in zip(*columns.values())])
                     for columns in chunks]}


def _metrics(record: dict) -> dict[str, float]:
    """A record's metrics (its numbers, curves aside) as the ``metrics`` column's map."""
    return {name: float(value) for name, value in record.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and name not in ("label", "predicted")}
