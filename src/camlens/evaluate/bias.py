r"""The Grad-CAM paper's dataset-bias diagnostic: where does a model find its evidence for each
class — on the object, or on something that merely comes with it in the training data?

:func:`bias_audit` explains every image of a labelled dataset for its true class and records how
the map's energy (:func:`~camlens.metrics.localization.energy_in`) is shared: inside the object
(the label's boxes, or the sample's mask) and inside each user-given :class:`~camlens.evaluate.regions.Region`
(a border, a watermark, the background), with whether the model got the image right. Records go
to ``bias.jsonl`` as they are made, so a killed run resumes. :func:`bias_summary` averages them
per class and flags a class when

.. math:: \bar E_\text{object} < \min(\tau,\ \lambda \bar A_\text{object})
   \quad\text{or}\quad \max_r \frac{\bar E_r}{\bar A_r} > \frac{\bar E_\text{object}}{\bar A_\text{object}},

with :math:`\bar E` a mean share of energy and :math:`\bar A` a mean share of the image's area
over the class's images. The first: most of the evidence lies outside the object
(:math:`\tau = 0.5`, the literal "mostly") *and* the object holds less than :math:`\lambda = 2`
times what a uniform map would give it. Maps of a coarse layer spill past an object's edge, so a
small object's share stays below one half even when the map is centred on it (measured on 64 px
scenes, objects of 5–9 % of the image: 0.35–0.50 for maps on the object); the second condition
keeps those unflagged, and large objects are judged by the first alone. The second clause:
some named region holds more evidence per pixel than the object does — evidence on the marker.
:func:`bias_examples` draws a flagged class's images with their maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from ..data import Sample, boxes_in_input, mask_in_input, read_image, resume_records
from ..explain import explain
from ..metrics.localization import boxes_mask, energy_in
from ..models import LoadedModel
from ..report import draw_box, grid, overlay
from .protocol import model_settings
from .regions import Region

__all__ = ["bias_audit", "bias_summary", "bias_examples", "object_mask", "FLAG_THRESHOLD", "FLAG_LIFT"]

FLAG_THRESHOLD = 0.5  # τ: a class is flagged when less than half of its evidence lies on the object…
FLAG_LIFT = 2.0       # λ: … and less than twice what a uniform map would put there


def object_mask(sample: Sample, photo_size: tuple[int, int], model: LoadedModel) -> torch.Tensor:
    """Where the sample's labelled object lies in the model's input: its mask (the label's index
    in the mask image) when it has one, else the union of the label's boxes."""
    if sample.mask is not None:
        return mask_in_input(sample.mask, model.preprocessing, foreground={sample.label})
    return boxes_mask(boxes_in_input(sample.boxes_of(sample.label), photo_size, model.preprocessing),
                      model.preprocessing.size)


def _correct(model: LoadedModel, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Whether each image's label is predicted: the top-1 class, or (multi-label) its logit > 0."""
    if model.task == "multilabel":
        return outputs.gather(1, labels[:, None])[:, 0] > 0
    return outputs.argmax(dim=1) == labels


def bias_audit(model: LoadedModel, samples: Sequence[Sample], out: str | Path, *, method: str = "gradcam",
               regions: Sequence[Region] = (), layer: str | None = None, images_per_step: int = 8,
               resume: bool = True, progress: bool = True) -> list[dict]:
    """Audit ``samples`` (each with a label and its boxes or mask): one record per image appended
    to ``out/bias.jsonl`` with ``energy_object``, ``object_area`` (the object's share of the
    input), ``correct`` and, per region, ``energy:NAME`` and ``area:NAME``; returns every record of the file (see the
    module docstring). A resumed run (``resume``) skips the images already in the file."""
    unusable = [s.id for s in samples if s.label is None or not (s.mask or s.boxes_of(s.label))]
    if unusable:
        raise ValueError(f"{len(unusable)} image(s) have no label or no box or mask of it (e.g. {unusable[0]}): the "
                         "audit measures how much of each class's evidence lies on its object")
    names = [r.name for r in regions]
    if len(set(names)) < len(names) or "object" in names:
        raise ValueError(f"region names must be distinct and not 'object': {names}")
    layer = layer or model.layer

    def step(group: list[Sample]) -> list[dict]:
        photos = [read_image(sample.path) for sample in group]
        labels = torch.tensor([sample.label for sample in group], device=model.device)
        explanation = explain(model.model, model.batch(photos), layer, method, labels)
        correct = _correct(model, explanation.outputs, labels).tolist()
        maps = explanation.maps[method].cpu()
        records = []
        for i, (sample, photo) in enumerate(zip(group, photos)):
            inside = object_mask(sample, photo.size, model)
            record = {"id": sample.id, "label": sample.label, "method": method, "correct": correct[i],
                      "energy_object": energy_in(maps[i], inside), "object_area": float(inside.float().mean())}
            for region in regions:
                where = region.in_input(photo.size, model.preprocessing, inside)
                record[f"energy:{region.name}"] = energy_in(maps[i], where)
                record[f"area:{region.name}"] = float(where.float().mean())
            records.append(record)
        return records

    settings = model_settings(model, layer) | {"method": method, "regions": [r.settings() for r in regions]}
    return resume_records(Path(out) / "bias.jsonl", samples, step, settings=settings, per_step=images_per_step,
                          desc="bias audit", resume=resume, progress=progress)


def bias_summary(records: Sequence[dict], class_names: Sequence[str] = (), threshold: float = FLAG_THRESHOLD,
                 lift: float = FLAG_LIFT) -> list[dict]:
    """Per class (in order of class index): ``images``, ``accuracy``, the mean ``energy_object``
    and ``object_area``, ``lift_object`` (their ratio), the mean ``energy:NAME``, ``area:NAME``
    and ``lift:NAME`` of every region, ``flagged`` and ``why`` (see the module docstring for the
    rule, ``threshold`` τ and ``lift`` λ)."""
    by_class: dict[int, list[dict]] = {}
    for record in records:
        by_class.setdefault(record["label"], []).append(record)
    regions = sorted({key.removeprefix("energy:") for record in records for key in record if key.startswith("energy:")})
    rows = []
    for label in sorted(by_class):
        found = by_class[label]
        mean = lambda key: sum(float(r[key]) for r in found) / len(found)  # noqa: E731
        ratio = lambda energy, area: energy / area if area > 0 else 0.0  # noqa: E731
        row = {"class": label, "name": class_names[label] if 0 <= label < len(class_names) else str(label),
               "images": len(found), "accuracy": mean("correct"), "energy_object": mean("energy_object"),
               "object_area": mean("object_area")}
        row["lift_object"] = ratio(row["energy_object"], row["object_area"])
        for name in regions:
            row[f"energy:{name}"], row[f"area:{name}"] = mean(f"energy:{name}"), mean(f"area:{name}")
            row[f"lift:{name}"] = ratio(row[f"energy:{name}"], row[f"area:{name}"])
        why = []
        if row["energy_object"] < min(threshold, lift * row["object_area"]):
            why.append(f"{1 - row['energy_object']:.0%} of the evidence outside the object, which holds "
                       f"{row['lift_object']:.1f}× a uniform map's share")
        heaviest = max(regions, key=lambda name: row[f"lift:{name}"], default=None)
        if heaviest is not None and row[f"lift:{heaviest}"] > row["lift_object"]:
            why.append(f"more evidence per pixel on {heaviest} ({row[f'energy:{heaviest}']:.2f} of it on "
                       f"{row[f'area:{heaviest}']:.0%} of the image) than on the object ({row['energy_object']:.2f} "
                       f"on {row['object_area']:.0%})")
        row["flagged"], row["why"] = bool(why), "; ".join(why)
        rows.append(row)
    return rows


def bias_examples(model: LoadedModel, samples: Sequence[Sample], records: Sequence[dict], label: int, out: str | Path,
                  *, count: int = 4, layer: str | None = None) -> Path:
    """A sheet of up to ``count`` images of class ``label`` — those whose maps put the least energy
    on the object first — each as the model saw it, with the object's boxes, and with the map of
    its class. Written to ``out/flagged-<label>.jpg``; returns the path."""
    energy = {r["id"]: r["energy_object"] for r in records if r["label"] == label}
    chosen = sorted((s for s in samples if s.id in energy), key=lambda s: energy[s.id])[:count]
    if not chosen:
        raise ValueError(f"no audited image of class {label}")
    method = next(r["method"] for r in records if r["label"] == label)
    photos = [read_image(sample.path) for sample in chosen]
    explanation = explain(model.model, model.batch(photos), layer or model.layer, method, label)
    panels, titles, captions = [], [], []
    scale = max(1, 224 // max(model.preprocessing.size))  # small inputs (64 px scenes) drawn larger
    for i, (sample, photo) in enumerate(zip(chosen, photos)):
        seen = model.preprocessing.fit_image(photo)
        seen = seen.resize((seen.width * scale, seen.height * scale), Image.NEAREST)
        boxed = seen
        for box in boxes_in_input(sample.boxes_of(label), photo.size, model.preprocessing):
            boxed = draw_box(boxed, tuple(v * scale for v in box), width=max(1, scale))
        panels.append([boxed, overlay(seen, explanation.maps[method][i])])
        titles.append(["as the model saw it", f"{method}: {energy[sample.id]:.0%} on the object"])
        captions.append(sample.id)
    name = model.class_names[label] if 0 <= label < len(model.class_names) else str(label)
    sheet = grid(panels, titles, [f"{name}: {c}" for c in captions], panel_size=220)
    path = Path(out) / f"flagged-{label}.jpg"
    sheet.save(path, quality=88)
    return path
