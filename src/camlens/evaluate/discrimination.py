"""The Grad-CAM paper's class-discrimination study, measured without people (the measure itself is
:mod:`camlens.metrics.discrimination`): over images that hold two classes, how often does each
method's map of one class, alone, make the model prefer that class over the other?

A two-class dataset is a CSV ``file,class_a,class_b`` (class names or indices; :func:`read_pairs`).
:func:`~camlens.data.scenes.write_pairs` writes one from synthetic scenes and :func:`composite_pairs`
from any labelled photos, two side by side. :func:`discrimination` explains both classes of every
image with every method, keeps the top 5, 10 and 20 % of pixels of each map and records whether the
model then prefers the explained class; records go to ``discrimination.jsonl`` as they come (a
killed run resumes). :func:`discrimination_summary` gives each method's rate per fraction with a
95 % Wilson interval, over the images whose two classes the model recognises on the whole image
(both in its top 5; for a multi-label model, both present) — the paper's images showed both.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..data import Sample, read_image, resume_records, resolve_class
from ..explain import explain
from ..metrics.discrimination import FillKind, revealed
from ..models import LoadedModel
from .protocol import model_settings

__all__ = ["Pair", "read_pairs", "composite_pairs", "discrimination", "discrimination_summary", "FRACTIONS"]

FRACTIONS = (0.05, 0.1, 0.2)


@dataclass(frozen=True)
class Pair:
    """An image holding two classes, ``a`` and ``b`` (indices of the model's classes)."""

    path: Path
    a: int
    b: int
    id: str


def read_pairs(path: str | Path, class_names: Sequence[str]) -> list[Pair]:
    """The images of a ``file,class_a,class_b`` CSV (paths relative to its folder), classes given by
    name or index; a missing column, an unknown class or a pair of one class twice is a ``ValueError``.
    A pair's id is ``file:a:b``, so one image may be listed with several pairs of its classes."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"file", "class_a", "class_b"} <= set(rows[0]):
        raise ValueError(f"{path} needs the columns file, class_a and class_b; it has {', '.join(rows[0])}")
    pairs: list[Pair] = []
    seen: set[tuple[str, frozenset[int]]] = set()
    for number, row in enumerate(rows, start=2):
        try:
            a, b = resolve_class(row["class_a"], class_names), resolve_class(row["class_b"], class_names)
        except ValueError as error:
            raise ValueError(f"{path}, line {number}: {error}") from None
        if a == b:
            raise ValueError(f"{path}, line {number}: both classes are {class_names[a]!r}; a pair needs two")
        if (row["file"], frozenset((a, b))) in seen:
            raise ValueError(f"{path}, line {number}: {row['file']} with {class_names[a]!r} and {class_names[b]!r} "
                             "is listed already (each pair explains both its classes)")
        seen.add((row["file"], frozenset((a, b))))
        pairs.append(Pair(path.parent / row["file"], a, b, f"{row['file']}:{a}:{b}"))
    return pairs


def composite_pairs(samples: Sequence[Sample], folder: str | Path, count: int, seed: int = 0, size: int = 224) -> Path:
    """Two-class images from labelled photos: ``count`` pairs of photos of different labels, drawn
    from ``seed``, each cropped to a centred half-width strip and put side by side in a ``size``
    square (``pair-NNNN.png``), with ``pairs.csv``. Returns the CSV's path. Explain them with the
    model's ``fit="resize"`` so that neither half is cut."""
    labelled = [s for s in samples if s.label is not None]
    if len({s.label for s in labelled}) < 2:
        raise ValueError("composites need photos of at least two labels")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = ["file,class_a,class_b"]
    while len(rows) <= count:
        left, right = (labelled[i] for i in rng.choice(len(labelled), 2, replace=False))
        if left.label == right.label:
            continue
        canvas = Image.new("RGB", (size, size))
        for offset, sample in ((0, left), (size // 2, right)):
            canvas.paste(ImageOps.fit(read_image(sample.path), (size // 2, size), Image.BILINEAR), (offset, 0))
        name = f"pair-{len(rows) - 1:04d}.png"
        canvas.save(folder / name)
        rows.append(f"{name},{left.label},{right.label}")
    path = folder / "pairs.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _recognised(model: LoadedModel, outputs: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> list[bool]:
    """Whether the model sees both classes on the whole image: both in its top 5, or (multi-label) both present."""
    if model.task == "multilabel":
        return ((outputs.gather(1, a[:, None]) > 0) & (outputs.gather(1, b[:, None]) > 0))[:, 0].tolist()
    top = outputs.topk(min(5, outputs.shape[1]), dim=1).indices
    return ((top == a[:, None]).any(dim=1) & (top == b[:, None]).any(dim=1)).tolist()


def discrimination(model: LoadedModel, pairs: Sequence[Pair], out: str | Path, methods: Sequence[str], *,
                   fractions: Sequence[float] = FRACTIONS, fill: FillKind = "blur", layer: str | None = None,
                   images_per_step: int = 8, resume: bool = True, progress: bool = True) -> list[dict]:
    """Every method's map of each of the two classes of every image, measured by
    :func:`~camlens.metrics.discrimination.revealed` at each fraction; one record per image, class,
    method and fraction appended to ``out/discrimination.jsonl`` (``revealed``, ``recognised``).
    Returns every record of the file."""
    if not methods:
        raise ValueError("no method to measure")
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"fractions must be in (0, 1], not {list(fractions)}")
    layer = layer or model.layer

    def step(group: list[Pair]) -> list[dict]:
        images = model.batch([read_image(p.path) for p in group])
        a = torch.tensor([p.a for p in group], device=model.device)
        b = torch.tensor([p.b for p in group], device=model.device)
        both = images.repeat(2, 1, 1, 1)                 # rows 0..B-1 explain a, B..2B-1 explain b
        explained, other = torch.cat([a, b]), torch.cat([b, a])
        explanation = explain(model.model, both, layer, methods, explained)
        recognised = _recognised(model, explanation.outputs[: len(group)], a, b)
        records, explained_list, other_list = [], explained.tolist(), other.tolist()
        for method in methods:
            for fraction in fractions:
                scores = revealed(model.model, both, explanation.maps[method], explained, other, fraction,
                                  fill).tolist()
                for row, score in enumerate(scores):
                    pair = group[row % len(group)]
                    records.append({"id": pair.id, "image": str(pair.path),
                                    "explained": explained_list[row], "other": other_list[row],
                                    "method": method, "fraction": fraction, "fill": fill,
                                    "recognised": recognised[row % len(group)], "revealed": score})
        return records

    settings = model_settings(model, layer) | {"methods": list(methods), "fractions": list(fractions), "fill": fill}
    return resume_records(Path(out) / "discrimination.jsonl", pairs, step, settings=settings,
                          per_step=images_per_step, desc="class discrimination", resume=resume, progress=progress)


def _wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a rate."""
    if n == 0:
        return math.nan, math.nan
    rate = successes / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def discrimination_summary(records: Sequence[dict], recognised_only: bool = True) -> list[dict]:
    """Per method and fraction, in the order first met: ``maps`` (explained classes counted),
    ``images``, the ``rate`` at which a map revealed its class, and its 95 % Wilson interval
    (``low``, ``high``); over the images whose two classes the model recognises, unless
    ``recognised_only`` is off."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for record in records:
        if record["recognised"] or not recognised_only:
            groups.setdefault((record["method"], record["fraction"]), []).append(record)
    rows = []
    for (method, fraction), found in groups.items():
        hits = sum(r["revealed"] for r in found)
        low, high = _wilson(hits, len(found))
        rows.append({"method": method, "fraction": fraction, "maps": len(found),
                     "images": len({r.get("image", r["id"]) for r in found}), "rate": hits / len(found),
                     "low": low, "high": high})
    return rows
