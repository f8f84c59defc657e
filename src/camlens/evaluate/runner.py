"""``camlens evaluate``: methods × metrics over a dataset, one model and one layer.

Per image, one call of :func:`camlens.explain` for the predicted class (top-5 when localization
is measured) and, where the true class is needed (pointing game, energy, mask IoU, diagnosis),
one for the label. Results go to ``results.jsonl`` one line per (image, method), written and
flushed image by image: a killed run resumes where it stopped, recomputing nothing that was
written and writing nothing twice. The summary (mean ± 95% confidence interval per method and
metric, best per column marked) is computed from that file alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from ..data import ImageReadError, Sample, boxes_in_input, mask_in_input, read_image
from ..engine.modelstate import model_device
from ..explain import explain
from ..explanation import Explanation
from ..metrics import axioms, faithfulness, localization
from ..metrics.registry import GROUPS
from ..models import LoadedModel
from ..report.figures import diagnosis
from ..targets import TopK
from .protocol import Protocol, settle_protocol
from ..data.jsonl import append_jsonl, read_jsonl
from .summary import Summary, summarize

__all__ = ["check_groups", "check_dataset", "evaluate"]


def check_groups(groups: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the unknown metric groups and the known ones."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown metric group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")


def check_dataset(samples: Sequence[Sample], groups: Sequence[str]) -> None:
    """Raise ``ValueError`` when ``groups`` ask for what no sample has: localization needs labels
    and boxes or masks. (A run would otherwise end with an empty table.)"""
    if "localization" in groups and not any(s.label is not None and (s.boxes or s.mask) for s in samples):
        raise ValueError(f"localization needs labelled images with boxes or masks, and none of the {len(samples)} "
                         "images has them: give a boxes CSV (x0,y0,x1,y1 columns), VOC/ImageNet XML or a mask column")


def _per_row_faithfulness(model: LoadedModel, image: torch.Tensor, explanation: Explanation, methods: Sequence[str],
                          protocol: Protocol, batch_size: int, occlusion: bool) -> dict[str, dict]:
    """Faithfulness of every method's map for the first row (the predicted class), batched over methods."""
    maps = torch.stack([explanation.maps[m][0] for m in methods])
    images = image.expand(len(methods), *image.shape[1:])
    classes = explanation.targets[:1].expand(len(methods))
    scores = faithfulness.masked_scores(model.model, images, maps, classes, kind=protocol.score, mask=protocol.mask,
                                        batch_size=batch_size)
    curves = faithfulness.deletion_insertion(model.model, images, maps, classes, steps=protocol.steps,
                                             kind=protocol.score, batch_size=batch_size)
    values = {
        "average_drop": faithfulness.average_drop(scores["Y"], scores["O"]),
        "increase_in_confidence": faithfulness.increase_in_confidence(scores["Y"], scores["O"]),
        "add": faithfulness.average_drop_in_deletion(scores["Y"], scores["D"]),
        "deletion_auc": curves.deletion_auc,
        "insertion_auc": curves.insertion_auc,
    }
    if occlusion:
        reference = faithfulness.occlusion_map(model.model, image, explanation.targets[:1], batch_size=batch_size)
        values["occlusion_correlation"] = faithfulness.rank_correlation(maps, reference.expand(len(methods), -1, -1))
    records = {m: {name: float(v[i]) for name, v in values.items()} for i, m in enumerate(methods)}
    for i, m in enumerate(methods):
        records[m]["deletion_curve"] = [round(float(v), 6) for v in curves.deletion[i]]
        records[m]["insertion_curve"] = [round(float(v), 6) for v in curves.insertion[i]]
    return records


def _axioms(explanation: Explanation, method: str) -> dict[str, float]:
    if method not in explanation.weights:
        return {}  # spatial and input methods have no channel weights
    weights, activations = explanation.weights[method][:1], explanation.activations[:1]
    scores, drops = explanation.scores[:1], axioms.removal_drops(explanation)[:1]
    return {
        "conservation_error": float(axioms.conservation_error(weights, activations, scores)[0]),
        "sensitivity_error": float(axioms.sensitivity_error(weights, activations, scores, drops)[0]),
        "sensitivity_correlation": float(axioms.sensitivity_correlation(weights, activations, drops)[0]),
    }


def _shapley(explanation: Explanation, method: str) -> dict[str, float]:
    if method not in explanation.weights:
        return {}
    weights, reference = explanation.weights[method][:1], explanation.weights["shapley"][:1]
    return {"shapley_distance": float(axioms.shapley_distance(weights, reference)[0]),
            "shapley_correlation": float(axioms.shapley_correlation(weights, reference)[0])}


def _localization(sample: Sample, size: tuple[int, int], model: LoadedModel, predicted: Explanation,
                  truth: Explanation | None, method: str, mask: torch.Tensor | None, protocol: Protocol) -> dict[str, float]:
    result: dict[str, float] = {}
    crop = model.preprocessing.crop
    truths = boxes_in_input(sample.boxes_of(sample.label), size, model.preprocessing) if sample.boxes else []
    if truths:
        classes = [int(c) for c in predicted.targets]
        boxes = [protocol.box(predicted.maps[method][row]) for row in range(len(predicted))]
        top1, top5 = localization.localization_errors(classes, boxes, sample.label, truths, protocol.iou)
        result["localization_error_top1"], result["localization_error_top5"] = top1, top5
    if truth is None:
        return result
    saliency = truth.maps[method][0].clamp_min(0).cpu()
    region = mask if mask is not None else (localization.boxes_mask(truths, (crop, crop)) if truths else None)
    if truths:
        result["box_iou"] = localization.best_iou(protocol.box(saliency), truths)
    if region is not None:
        result["pointing_game"] = float(localization.pointing_hit(saliency, region, protocol.tolerance))
        result["energy_pointing_game"] = localization.energy_in(saliency, region)
    if mask is not None:
        result["mask_iou"] = localization.mask_iou(saliency, mask, protocol.mask_threshold)
    return result


def _diagnosis(out: Path, sample: Sample, original, model: LoadedModel, predicted: Explanation, truth: Explanation,
               methods: Sequence[str]) -> None:
    name = lambda c: model.class_names[c] if 0 <= c < len(model.class_names) else str(c)  # noqa: E731
    picture = diagnosis(original, {m: predicted.maps[m][0].cpu() for m in methods}, {m: truth.maps[m][0].cpu() for m in methods},
                        name(int(predicted.targets[0])), name(sample.label), model.preprocessing.crop_box(original.size))
    out.mkdir(parents=True, exist_ok=True)
    picture.save(out / f"{Path(sample.id).stem}.png")


def evaluate(model: LoadedModel, samples: Sequence[Sample], methods: Sequence[str], out: str | Path, *,
             groups: Sequence[str] = ("faithfulness", "axioms"), layer: str | None = None,
             protocol: Protocol = Protocol(), batch_size: int = 32, resume: bool = True, diagnose: bool = False,
             progress: bool = True, options: dict | None = None) -> Summary:
    """Evaluate ``methods`` on ``samples`` with the metric ``groups`` (see :data:`METRICS`) under
    ``protocol``, writing ``results.jsonl`` under ``out`` incrementally; returns the
    :class:`Summary` (also written as ``summary.md``, ``summary.csv``, ``summary.json`` and
    ``curves.png``). ``batch_size``: images per forward pass of the metrics (memory, not results)."""
    check_groups(groups)
    check_dataset(samples, groups)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.jsonl"
    if not resume and path.exists():
        path.unlink()
    settle_protocol(out / "protocol.json", protocol, model, layer or model.layer, resume and path.exists())
    done = {(r["id"], r["method"]) for r in read_jsonl(path)}
    methods = tuple(methods)
    extra = (("ablationcam",) if "axioms" in groups else ()) + (("shapley",) if "shapley" in groups else ())
    explained = tuple(dict.fromkeys(methods + extra))
    layer = layer or model.layer
    todo = [s for s in samples if any((s.id, m) not in done for m in methods)]

    with open(path, "a", encoding="utf-8") as results:
        for sample in tqdm(todo, desc="evaluate", unit="image", disable=not progress, initial=len(samples) - len(todo),
                           total=len(samples)):
            try:
                records = _evaluate_sample(model, sample, methods, explained, layer, groups, protocol, batch_size,
                                           diagnose, out, options)
            except ImageReadError as error:  # recorded, so that a resumed run does not retry it forever
                records = [{"id": sample.id, "method": m, "error": str(error)} for m in methods]
            append_jsonl(results, (r for r in records if (r["id"], r["method"]) not in done))
    summary = summarize(read_jsonl(path), methods)
    summary.write(out)
    return summary


def _evaluate_sample(model: LoadedModel, sample: Sample, methods: tuple[str, ...], explained: tuple[str, ...],
                     layer: str, groups: Sequence[str], protocol: Protocol, batch_size: int, diagnose: bool, out: Path,
                     options: dict | None) -> list[dict]:
    original = read_image(sample.path)
    image = model.preprocessing(original)[None].to(model_device(model.model))
    run = lambda target: explain(model.model, image, layer=layer, methods=explained, target=target,  # noqa: E731
                                 options=options)
    locating = "localization" in groups
    predicted = run(TopK(5) if locating else None)
    wants_truth = sample.label is not None and (locating or (diagnose and int(predicted.targets[0]) != sample.label))
    truth = run(sample.label) if wants_truth else None
    records = {m: {"id": sample.id, "method": m, "label": sample.label, "predicted": int(predicted.targets[0])}
               for m in methods}
    if "faithfulness" in groups or "occlusion" in groups:
        for m, values in _per_row_faithfulness(model, image, predicted, methods, protocol, batch_size,
                                                 "occlusion" in groups).items():
            records[m].update(values)
    mask = mask_in_input(sample.mask, model.preprocessing) if sample.mask and locating else None
    for m in methods:
        if "axioms" in groups:
            records[m].update(_axioms(predicted, m))
        if "shapley" in groups:
            records[m].update(_shapley(predicted, m))
        if locating:
            records[m].update(_localization(sample, original.size, model, predicted, truth, m, mask, protocol))
    if diagnose and truth is not None and int(predicted.targets[0]) != sample.label:
        _diagnosis(out / "diagnosis", sample, original, model, predicted, truth, methods)
    return list(records.values())
