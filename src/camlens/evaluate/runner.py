"""``camlens evaluate``: methods × metrics over a dataset, one model and one layer.

Images go a few at a time. Per group, one call of :func:`camlens.explain` for the predicted
class (top-5 when localization is measured) and, for the images whose true class is needed
(pointing game, energy, mask IoU, diagnosis), one for the label; then the faithfulness metrics'
perturbed images of the whole group stream through a faster copy of the model in batches.
Results go to ``results.jsonl`` one line per (image, method), written and flushed group by
group, each record naming the metric groups it holds: a killed run resumes where it stopped,
recomputing nothing that was written and writing nothing twice; a run resumed with methods or
metric groups added computes just those for the images already done; images that failed are
tried again. The summary (mean ± 95% confidence interval per method and
metric, best per column marked) is computed from that file alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm

from ..data import ImageReadError, Sample, boxes_in_input, mask_in_input, read_image
from ..data.jsonl import append_jsonl, read_jsonl
from ..engine.inference import inference_copy
from ..explain import explain
from ..explanation import Explanation
from ..metrics import axioms, faithfulness, localization
from ..metrics.registry import GROUPS
from ..models import LoadedModel
from ..report.figures import diagnosis
from ..targets import TopK
from .examples import localization_examples
from .protocol import Protocol, settle_protocol
from .report import write_report
from .summary import Summary, summarize

__all__ = ["check_groups", "check_dataset", "evaluate", "evaluator", "default_batch_size"]


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


def _faithfulness(scorer: torch.nn.Module, images: torch.Tensor, explanations: Sequence[Explanation],
                  methods: Sequence[str], protocol: Protocol, batch_size: int, occlusion: bool) -> list[dict[str, dict]]:
    """Faithfulness of every method's map for the predicted class (each explanation's first row)
    of a group of images, all images × methods × steps in one stream of forward passes of
    ``batch_size`` images: per image, the records of each method."""
    count = len(methods)
    maps = torch.stack([e.maps[m][0] for e in explanations for m in methods])
    classes = torch.stack([e.targets[0] for e in explanations]).repeat_interleave(count)
    expanded = images.repeat_interleave(count, dim=0)
    scores = faithfulness.masked_scores(scorer, expanded, maps, classes, kind=protocol.score, mask=protocol.mask,
                                        batch_size=batch_size)
    curves = faithfulness.deletion_insertion(scorer, expanded, maps, classes, steps=protocol.steps,
                                             kind=protocol.score, batch_size=batch_size)
    values = {
        "average_drop": faithfulness.average_drop(scores["Y"], scores["O"]),
        "increase_in_confidence": faithfulness.increase_in_confidence(scores["Y"], scores["O"]),
        "add": faithfulness.average_drop_in_deletion(scores["Y"], scores["D"]),
        "deletion_auc": curves.deletion_auc,
        "insertion_auc": curves.insertion_auc,
    }
    if occlusion:
        reference = faithfulness.occlusion_map(scorer, images, classes[::count], batch_size=batch_size)
        values["occlusion_correlation"] = faithfulness.rank_correlation(maps, reference.repeat_interleave(count, dim=0))
    values = {name: v.tolist() for name, v in values.items()}  # one read-back for the group
    deletion, insertion = curves.deletion.tolist(), curves.insertion.tolist()
    results = []
    for image in range(len(explanations)):
        records = {}
        for offset, m in enumerate(methods):
            row = image * count + offset
            records[m] = {name: float(v[row]) for name, v in values.items()}
            records[m]["deletion_curve"] = [round(v, 6) for v in deletion[row]]
            records[m]["insertion_curve"] = [round(v, 6) for v in insertion[row]]
        results.append(records)
    return results


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
    truths = boxes_in_input(sample.boxes_of(sample.label), size, model.preprocessing) if sample.boxes else []
    if truths:
        classes = [int(c) for c in predicted.targets]
        boxes = [protocol.box(predicted.maps[method][row]) for row in range(len(predicted))]
        top1, top5 = localization.localization_errors(classes, boxes, sample.label, truths, protocol.iou)
        result["localization_error_top1"], result["localization_error_top5"] = top1, top5
    if truth is None:
        return result
    saliency = truth.maps[method][0].clamp_min(0).cpu()
    region = mask if mask is not None else (localization.boxes_mask(truths, model.preprocessing.size) if truths else None)
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


def default_batch_size(device: torch.device) -> int:
    """Images per forward pass of the metrics when none is given: 8 on a CPU, where small batches
    stay in the caches (EfficientNet-Lite0: 8.8 ms per image at 8, 10.4 at 32), 64 on a GPU."""
    return 8 if device.type == "cpu" else 64


def evaluate(model: LoadedModel, samples: Sequence[Sample], methods: Sequence[str], out: str | Path, *,
             groups: Sequence[str] = ("faithfulness", "axioms"), layer: str | None = None,
             protocol: Protocol = Protocol(), batch_size: int | None = None, images_per_step: int = 8,
             resume: bool = True, diagnose: bool = False, progress: bool = True,
             options: dict | None = None) -> Summary:
    """Evaluate ``methods`` on ``samples`` with the metric ``groups`` (see :data:`METRICS`) under
    ``protocol``, writing ``results.jsonl`` under ``out`` incrementally; returns the
    :class:`Summary` (also written as ``summary.md``, ``summary.csv``, ``summary.json`` and
    ``curves.png``).

    Images go ``images_per_step`` at a time: one :func:`explain` call for them all, then every
    perturbed image of the faithfulness metrics (images × methods × steps) in one stream of
    forward passes of ``batch_size`` images (memory, not results; default
    :func:`default_batch_size`) through :func:`~camlens.engine.inference.inference_copy` of the
    model. Their results are written when the step ends."""
    check_groups(groups)
    check_dataset(samples, groups)
    if images_per_step < 1:
        raise ValueError(f"images_per_step must be at least 1, not {images_per_step}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.jsonl"
    if not resume and path.exists():
        path.unlink()
    methods, groups = tuple(methods), tuple(groups)
    settle_protocol(out / "protocol.json", protocol, model, layer or model.layer, resume and path.exists(),
                    samples=samples, methods=methods, groups=groups, options=options)
    done = completed(read_jsonl(path))
    layer = layer or model.layer
    needs = {s.id: _missing(done, s.id, methods, groups) for s in samples}
    todo = [s for s in samples if needs[s.id][0]]
    base = evaluator(model, methods, groups=groups, layer=layer, protocol=protocol, batch_size=batch_size,
                     options=options, diagnose=diagnose, out=out, progress=progress)

    with open(path, "a", encoding="utf-8") as results, \
            tqdm(desc="evaluate", unit="image", disable=not progress, initial=len(samples) - len(todo),
                 total=len(samples)) as bar:
        for need in dict.fromkeys(needs[s.id] for s in todo):  # images needing the same work, together
            alike = [s for s in todo if needs[s.id] == need]
            step = base.doing(*need)
            for start in range(0, len(alike), images_per_step):
                group = alike[start:start + images_per_step]
                append_jsonl(results, step(group))
                bar.update(len(group))
    records = read_jsonl(path)
    summary = summarize(records, methods, ids=[s.id for s in samples])
    summary.write(out)
    examples = (localization_examples(model, samples, records, methods, layer, protocol, out, options=options)
                if "localization" in groups else {})
    write_report(out, summary, model, layer, examples)
    return summary


def evaluator(model: LoadedModel, methods: Sequence[str], *, groups: Sequence[str] = ("faithfulness", "axioms"),
              layer: str | None = None, protocol: Protocol = Protocol(), batch_size: int | None = None,
              options: dict | None = None, diagnose: bool = False, out: str | Path | None = None,
              progress: bool = False) -> _Step:
    """What :func:`evaluate` does for each group of images, as a callable of its own: records of a
    list of samples (``step(samples)``), or of samples already read and preprocessed
    (``step.measure(samples, images, sizes)``); :func:`evaluate` feeds it groups of its dataset,
    and the workers of a distributed run the batches their readers made. Diagnosis pictures
    (``diagnose``) go under ``out``; nothing else is written."""
    check_groups(groups)
    methods, groups = tuple(methods), tuple(groups)
    device = model.device
    scorer = inference_copy(model.model) if {"faithfulness", "occlusion"} & set(groups) else None
    step = _Step(model, scorer, methods, methods, layer or model.layer, groups, protocol,
                 batch_size or default_batch_size(device), diagnose, Path(out) if out is not None else Path("."),
                 options, device, progress)
    return step.doing(methods, groups)


def completed(records: Sequence[dict]) -> dict[tuple[str, str], set[str]]:
    """Per (image id, method), the metric groups its records hold; records of an image that
    failed count for nothing (a resumed run tries it again)."""
    done: dict[tuple[str, str], set[str]] = {}
    for record in records:
        if "error" not in record:
            done.setdefault((record["id"], record["method"]), set()).update(record.get("groups", ()))
    return done


def _missing(done: dict[tuple[str, str], set[str]], image: str, methods: tuple[str, ...],
             groups: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The methods of ``image`` that lack a metric group, and the groups some of them lack."""
    lacking = {m: [g for g in groups if g not in done.get((image, m), set())] for m in methods}
    return (tuple(m for m in methods if lacking[m]),
            tuple(g for g in groups if any(g in missing for missing in lacking.values())))


@dataclass(frozen=True)
class _Step:
    """Evaluates a group of samples: their records, one per (sample, method)."""

    model: LoadedModel
    scorer: torch.nn.Module | None
    methods: tuple[str, ...]
    explained: tuple[str, ...]
    layer: str
    groups: Sequence[str]
    protocol: Protocol
    batch_size: int
    diagnose: bool
    out: Path
    options: dict | None
    device: torch.device
    progress: bool

    def doing(self, methods: tuple[str, ...], groups: tuple[str, ...]) -> _Step:
        """This step for these methods and metric groups only (what a resumed run still lacks)."""
        extra = (("ablationcam",) if "axioms" in groups else ()) + (("shapley",) if "shapley" in groups else ())
        return replace(self, methods=methods, groups=groups, explained=tuple(dict.fromkeys(methods + extra)))

    def explain(self, images: torch.Tensor, target: object) -> list[Explanation]:
        explanation = explain(self.model.model, images, layer=self.layer, methods=self.explained, target=target,
                              options=self.options, progress=self.progress)
        return [explanation.image(i) for i in range(images.shape[0])]

    def __call__(self, samples: Sequence[Sample]) -> list[dict]:
        records, read = [], []
        for sample in samples:
            try:
                read.append((sample, read_image(sample.path)))
            except ImageReadError as error:  # recorded, so that a resumed run does not retry it forever
                records += self.failed(sample, str(error))
        if not read:
            return records
        images = torch.stack([self.model.preprocessing(original) for _, original in read])
        return records + self.measure([s for s, _ in read], images, [o.size for _, o in read], [o for _, o in read])

    def failed(self, sample: Sample, reason: str) -> list[dict]:
        """The records of a sample whose image could not be read."""
        return [{"id": sample.id, "method": m, "error": reason, "groups": []} for m in self.methods]

    def measure(self, samples: Sequence[Sample], images: torch.Tensor, sizes: Sequence[tuple[int, int]],
                originals: Sequence | None = None) -> list[dict]:
        """The records of ``samples`` from their preprocessed ``images`` (B, C, H, W) and the
        sizes (width, height) of their files; ``originals`` (the photos) only for diagnosis
        pictures. Distributed runs call this on images their readers preprocessed."""
        images = images.to(self.device)
        locating = "localization" in self.groups
        predicted = self.explain(images, TopK(5) if locating else None)
        top1 = [int(e.targets[0]) for e in predicted]
        truths: list[Explanation | None] = [None] * len(samples)
        wanted = [i for i, sample in enumerate(samples)
                  if sample.label is not None and (locating or (self.diagnose and top1[i] != sample.label))]
        if wanted:
            for i, truth in zip(wanted, self.explain(images[wanted], [samples[i].label for i in wanted])):
                truths[i] = truth
        measures = self.scorer is not None and {"faithfulness", "occlusion"} & set(self.groups)
        faithful = (_faithfulness(self.scorer, images, predicted, self.methods, self.protocol, self.batch_size,
                                  "occlusion" in self.groups) if measures else [{}] * len(samples))
        records = []
        for i, sample in enumerate(samples):
            original = originals[i] if originals is not None else None
            records += self._records(sample, sizes[i], original, predicted[i], truths[i], faithful[i], top1[i])
        return records

    def _records(self, sample: Sample, size: tuple[int, int], original, predicted: Explanation,
                 truth: Explanation | None, faithful: dict[str, dict], top1: int) -> list[dict]:
        records = {m: {"id": sample.id, "method": m, "label": sample.label, "predicted": top1,
                       "groups": list(self.groups)} | faithful.get(m, {}) for m in self.methods}
        locating = "localization" in self.groups
        mask = mask_in_input(sample.mask, self.model.preprocessing) if sample.mask and locating else None
        for m in self.methods:
            if "axioms" in self.groups:
                records[m].update(_axioms(predicted, m))
            if "shapley" in self.groups:
                records[m].update(_shapley(predicted, m))
            if locating:
                records[m].update(_localization(sample, size, self.model, predicted, truth, m, mask, self.protocol))
        if self.diagnose and truth is not None and top1 != sample.label and original is not None:
            _diagnosis(self.out / "diagnosis", sample, original, self.model, predicted, truth, self.methods)
        return list(records.values())
