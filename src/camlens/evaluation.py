"""``camlens evaluate``: methods × metrics over a dataset, one model and one layer.

Per image, one call of :func:`camlens.explain` for the predicted class (top-5 when localization
is measured) and, where the true class is needed (pointing game, energy, mask IoU, diagnosis),
one for the label. Results go to ``results.jsonl`` one line per (image, method), written and
flushed image by image: a killed run resumes where it stopped, recomputing nothing that was
written and writing nothing twice. The summary (mean ± 95% confidence interval per method and
metric, best per column marked) is computed from that file alone.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import axioms, faithfulness, localization
from .datasets import Sample, boxes_in_input, mask_in_input
from .explain import explain
from .explanation import Explanation
from .images import ImageReadError, read_image
from .models.zoo import LoadedModel
from .targets import TopK

__all__ = ["Metric", "METRICS", "GROUPS", "Protocol", "ProtocolMismatch", "check_groups", "check_dataset", "evaluate",
           "summarize", "read_results", "Summary"]


@dataclass(frozen=True)
class Metric:
    name: str
    group: str
    higher_is_better: bool
    description: str


METRICS = {m.name: m for m in [
    Metric("average_drop", "faithfulness", False, "mean of max(0, Y − O)/Y, O = probability on image ⊙ L"),
    Metric("increase_in_confidence", "faithfulness", True, "fraction of images with O > Y"),
    Metric("add", "faithfulness", True, "mean of (Y − D)/Y, D = probability on image ⊙ (1 − L)"),
    Metric("deletion_auc", "faithfulness", False, "area under the probability as salient pixels are removed"),
    Metric("insertion_auc", "faithfulness", True, "area under the probability as salient pixels are inserted"),
    Metric("occlusion_correlation", "occlusion", True, "Spearman correlation with a 32-px occlusion map"),
    Metric("conservation_error", "axioms", False, "|S_c − Σ M| / |S_c| (XGrad-CAM)"),
    Metric("sensitivity_error", "axioms", False, "mean_k |w_k Σ A^k − (S_c − S_c(A∖A^k))| / |S_c| (XGrad-CAM)"),
    Metric("sensitivity_correlation", "axioms", True, "Pearson over k of w_k Σ A^k and S_c − S_c(A∖A^k)"),
    Metric("shapley_distance", "shapley", False, "L2 distance of unit-norm weights to Shapley values"),
    Metric("shapley_correlation", "shapley", True, "Spearman over k of weights and Shapley values"),
    Metric("localization_error_top1", "localization", False, "top-1 class wrong or box IoU < 0.5 (map at 15% of max)"),
    Metric("localization_error_top5", "localization", False, "no top-5 class right with box IoU ≥ 0.5"),
    Metric("box_iou", "localization", True, "IoU of the true class's box with its best ground-truth box"),
    Metric("pointing_game", "localization", True, "the true class's map peaks within 15 px of its region"),
    Metric("energy_pointing_game", "localization", True, "share of the true class's map inside its region"),
    Metric("mask_iou", "localization", True, "IoU of the map at 50% of max with the segmentation mask"),
]}
GROUPS = tuple(dict.fromkeys(m.group for m in METRICS.values()))
_CURVES = ("deletion_curve", "insertion_curve")


@dataclass(frozen=True)
class Protocol:
    """How the metrics are measured; the defaults are the papers' (see PAPERS.md). A results
    folder records its protocol and refuses to resume under a different one.

    Attributes:
        steps: deletion/insertion steps (RISE uses one per 224 pixels; 32 here by default).
        score: ``"probability"`` (softmax, the LIFT-CAM / Grad-CAM++ metrics) or ``"logit"``.
        mask: ``"soft"`` (the normalized map) or ``"top50"`` (binary, top half of the pixels) for
            Average Drop, Increase in Confidence and ADD.
        box_threshold: a map is binarized at this fraction of its maximum before taking a box (15%).
        largest_component: box around the largest connected component (else around all of them).
        iou: the IoU a box needs for a correct localization (0.5).
        tolerance: pointing-game tolerance in pixels (15).
        mask_threshold: fraction of the maximum for the segmentation-seed IoU (0.5).
    """

    steps: int = 32
    score: faithfulness.ScoreKind = "probability"
    mask: faithfulness.MaskKind = "soft"
    box_threshold: float = 0.15
    largest_component: bool = True
    iou: float = 0.5
    tolerance: float = 15.0
    mask_threshold: float = 0.5

    def __post_init__(self) -> None:
        faithfulness.check_options(self.score, self.mask, self.steps)
        for name in ("box_threshold", "iou", "mask_threshold"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in (0, 1], not {getattr(self, name)}")

    def box(self, saliency: torch.Tensor) -> localization.Box:
        return localization.box_from_map(saliency, self.box_threshold, self.largest_component)


class ProtocolMismatch(ValueError):
    """A results folder holds results measured under another protocol, model or layer."""


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


def read_results(path: Path) -> list[dict]:
    """The complete records of a results file; a torn last line (a run killed mid-write) is
    cut off the file so that appending goes on cleanly."""
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
    from .viz import diagnosis

    name = lambda c: model.class_names[c] if 0 <= c < len(model.class_names) else str(c)  # noqa: E731
    picture = diagnosis(original, {m: predicted.maps[m][0].cpu() for m in methods}, {m: truth.maps[m][0].cpu() for m in methods},
                        name(int(predicted.targets[0])), name(sample.label), model.preprocessing.crop_box(original.size))
    out.mkdir(parents=True, exist_ok=True)
    picture.save(out / f"{Path(sample.id).stem}.png")


def evaluate(model: LoadedModel, samples: Sequence[Sample], methods: Sequence[str], out: str | Path, *,
             groups: Sequence[str] = ("faithfulness", "axioms"), layer: str | None = None,
             protocol: Protocol = Protocol(), batch_size: int = 32, resume: bool = True, diagnose: bool = False,
             progress: bool = True, options: dict | None = None) -> "Summary":
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
    _settle_protocol(out / "protocol.json", protocol, model, layer or model.layer, resume and path.exists())
    done = {(r["id"], r["method"]) for r in read_results(path)}
    methods = tuple(methods)
    extra = (("ablationcam",) if "axioms" in groups else ()) + (("shapley",) if "shapley" in groups else ())
    explained = tuple(dict.fromkeys(methods + extra))
    layer = layer or model.layer
    todo = [s for s in samples if any((s.id, m) not in done for m in methods)]
    from tqdm import tqdm

    with open(path, "a", encoding="utf-8") as results:
        for sample in tqdm(todo, desc="evaluate", unit="image", disable=not progress, initial=len(samples) - len(todo),
                           total=len(samples)):
            try:
                records = _evaluate_sample(model, sample, methods, explained, layer, groups, protocol, batch_size,
                                           diagnose, out, options)
            except ImageReadError as error:  # recorded, so that a resumed run does not retry it forever
                records = [{"id": sample.id, "method": m, "error": str(error)} for m in methods]
            lines = "".join(json.dumps(r) + "\n" for r in records if (r["id"], r["method"]) not in done)
            results.write(lines)
            results.flush()
            os.fsync(results.fileno())
    summary = summarize(read_results(path), methods)
    summary.write(out)
    return summary


def _settle_protocol(path: Path, protocol: Protocol, model: LoadedModel, layer: str, resuming: bool) -> None:
    """Write the run's protocol, model and layer; when resuming, refuse a different one (the
    results would silently mix two definitions)."""
    settings = {"protocol": asdict(protocol), "model": model.name, "layer": layer}
    if resuming and path.exists():
        earlier = json.loads(path.read_text(encoding="utf-8"))
        if earlier != settings:
            changed = sorted(k for k in set(earlier["protocol"]) | set(settings["protocol"])
                             if earlier["protocol"].get(k) != settings["protocol"].get(k))
            changed += [k for k in ("model", "layer") if earlier.get(k) != settings[k]]
            raise ProtocolMismatch(f"{path.parent} holds results under another protocol ({', '.join(changed)} differ): "
                             "resume with the same settings, or restart")
    path.write_text(json.dumps(settings, indent=1), encoding="utf-8")


def _evaluate_sample(model: LoadedModel, sample: Sample, methods: tuple[str, ...], explained: tuple[str, ...],
                     layer: str, groups: Sequence[str], protocol: Protocol, batch_size: int, diagnose: bool, out: Path,
                     options: dict | None) -> list[dict]:
    original = read_image(sample.path)
    image = model.preprocessing(original)[None]
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


@dataclass(frozen=True)
class Summary:
    """Mean and 95% confidence half-width per (method, metric), with the count of images."""

    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    cells: dict[tuple[str, str], tuple[float, float, int]]
    curves: dict[str, dict[str, list[float]]]
    failures: dict[str, str] = field(default_factory=dict)  # image id → why it could not be evaluated

    def best(self, metric: str, digits: int = 3) -> tuple[str, ...]:
        """The methods with the best mean of ``metric``, all of those tied with it when rounded
        to ``digits`` (the precision the table prints): methods that coincide on a head, such as
        CAM, Grad-CAM and XGrad-CAM on GAP → linear, are marked together."""
        means = {m: round(self.cells[(m, metric)][0], digits) for m in self.methods if (m, metric) in self.cells}
        if not means:
            return ()
        top = (max if METRICS[metric].higher_is_better else min)(means.values())
        return tuple(m for m, v in means.items() if v == top)

    def rows(self) -> list[dict]:
        return [{"method": m, "metric": k, "mean": c[0], "ci95": c[1], "n": c[2],
                 "higher_is_better": METRICS[k].higher_is_better} for (m, k), c in self.cells.items()]

    def markdown(self) -> str:
        arrow = lambda k: "↑" if METRICS[k].higher_is_better else "↓"  # noqa: E731
        header = "| method | " + " | ".join(f"{k} {arrow(k)}" for k in self.metrics) + " |"
        lines = [header, "|" + "---|" * (len(self.metrics) + 1)]
        best = {k: self.best(k) for k in self.metrics}
        for m in self.methods:
            cells = []
            for k in self.metrics:
                if (m, k) not in self.cells:
                    cells.append("–")
                    continue
                mean, half, _ = self.cells[(m, k)]
                text = f"{mean:.3f} ± {half:.3f}"
                cells.append(f"**{text}**" if m in best[k] else text)
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        count = max((c[2] for c in self.cells.values()), default=0)
        lines.append(f"\n{count} images; mean ± 95% confidence interval (Student t); best per column in bold "
                     "(all of those tied at this precision); ↑ higher is better, ↓ lower is better.")
        if self.failures:
            lines.append(f"{len(self.failures)} image(s) could not be evaluated: " + "; ".join(self.failures.values()))
        return "\n".join(lines)

    def write(self, out: Path) -> None:
        (out / "summary.md").write_text(self.markdown() + "\n", encoding="utf-8")
        with open(out / "summary.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["method", "metric", "mean", "ci95", "n", "higher_is_better"])
            writer.writeheader()
            writer.writerows(self.rows())
        (out / "summary.json").write_text(json.dumps({"rows": self.rows(), "curves": self.curves}, indent=1), encoding="utf-8")
        if self.curves:
            self.plot_curves(out / "curves.png")

    def plot_curves(self, path: Path) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(10, 4), dpi=100)
        FigureCanvasAgg(figure)
        for index, kind in enumerate(_CURVES):
            axes = figure.add_subplot(1, 2, index + 1)
            for method, curves in self.curves.items():
                values = curves[kind]
                xs = [i / (len(values) - 1) for i in range(len(values))]
                auc = float(faithfulness.auc(torch.tensor(values)))
                axes.plot(xs, values, label=f"{method} ({auc:.3f})")
            axes.set_title(f"mean {kind.split('_')[0]} curve (AUC)")
            axes.set_xlabel("fraction of pixels " + ("removed" if index == 0 else "inserted"))
            axes.set_ylabel("probability of the class")
            axes.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(path)


def _mean_ci(values: list[float]) -> tuple[float, float]:
    from scipy.stats import t

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(t.ppf(0.975, n - 1) * sd / math.sqrt(n))


def summarize(records: Iterable[dict], methods: Sequence[str] | None = None) -> Summary:
    """The summary of result records (as written to ``results.jsonl``)."""
    records = list(records)
    methods = tuple(methods) if methods else tuple(dict.fromkeys(r["method"] for r in records))
    metrics = tuple(k for k in METRICS if any(k in r for r in records))
    cells, curves = {}, {}
    for m in methods:
        mine = [r for r in records if r["method"] == m]
        for k in metrics:
            values = [r[k] for r in mine if r.get(k) is not None and not math.isnan(r[k])]
            if values:
                mean, half = _mean_ci(values)
                cells[(m, k)] = (mean, half, len(values))
        with_curves = [r for r in mine if "deletion_curve" in r]
        if with_curves:
            curves[m] = {kind: [sum(c) / len(with_curves) for c in zip(*(r[kind] for r in with_curves))] for kind in _CURVES}
    failures = {r["id"]: r["error"] for r in records if "error" in r}
    return Summary(methods, metrics, cells, curves, failures)
