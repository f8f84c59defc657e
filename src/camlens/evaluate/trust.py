r"""Which of two models to trust — the automatic analogue of the Grad-CAM paper's trust study, in
which people shown explanations of two models' *identical* predictions judged which model was
more reliable.

:func:`compare_models` runs both models on a labelled dataset with boxes or masks and keeps the
images on which their predictions agree (the same top-1 class; for multi-label models, the same
verdict on the label). For each such image and model it explains the label and records

- ``energy_object``: the share of the map's energy on the object (the energy-based pointing game);
- ``pointing``: whether the map's maximum lies on it, within 15 px of a 224 px input;
- ``deletion`` and ``insertion``: the areas under RISE's curves (lower deletion, higher insertion:
  the map is faithful to *its own* model).

Records go to ``trust.jsonl`` as they are made (a killed run resumes). :func:`trust_summary`
averages them per model and says which model's evidence lies on the object more often, image by
image: the *evidence* measures separate a model that is right for the wrong reason; the
*faithfulness* measures cannot (a model looking at a spurious marker has faithful maps of the
marker), and are reported so that a user sees that. :func:`trust_sheet` draws the images on which
the two models' maps differ most, side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from ..data import Sample, read_image, resume_records
from ..explain import explain
from ..explanation import Explanation
from ..metrics.faithfulness import auc, deletion_insertion
from ..metrics.localization import energy_in, pointing_hit
from ..models import LoadedModel
from ..report import grid, overlay
from .bias import object_mask
from .protocol import model_settings

__all__ = ["compare_models", "trust_summary", "trust_sheet", "TRUST_COLUMNS"]

TRUST_COLUMNS = ("energy_object", "pointing", "deletion", "insertion")


def _verdicts(model: LoadedModel, outputs: torch.Tensor, labels: torch.Tensor) -> list[int]:
    """What each model says of each image, comparable between models: the top-1 class, or (multi-label)
    whether the label is present (1) or not (0)."""
    if model.task == "multilabel":
        return (outputs.gather(1, labels[:, None])[:, 0] > 0).long().tolist()
    return outputs.argmax(dim=1).tolist()


def _names(models: Sequence[LoadedModel]) -> list[str]:
    names = [m.name for m in models]
    return names if len(set(names)) == len(names) else [f"{name}#{i + 1}" for i, name in enumerate(names)]


def compare_models(models: Sequence[LoadedModel], samples: Sequence[Sample], out: str | Path, *,
                   method: str = "gradcam", layers: Sequence[str | None] = (None, None), steps: int = 16,
                   images_per_step: int = 8, resume: bool = True, progress: bool = True) -> list[dict]:
    """Both ``models`` on ``samples`` (labelled, with boxes or masks), one record per image and
    model in ``out/trust.jsonl`` (see the module docstring): ``agree`` and, for each model,
    ``predicted`` and ``correct``; on agreeing images also the measures of :data:`TRUST_COLUMNS`
    (``steps`` steps for deletion and insertion), each model's maps at its ``layers`` entry (its
    own recommended layer for ``None``). Returns every record of the file."""
    if len(models) != 2:
        raise ValueError(f"compare two models, not {len(models)}")
    if models[0].class_names != models[1].class_names:
        raise ValueError(f"{models[0].name} and {models[1].name} do not predict the same classes: their predictions "
                         "cannot agree")
    if models[0].task != models[1].task:
        raise ValueError(f"{models[0].name} is a {models[0].task} model and {models[1].name} a {models[1].task} one: "
                         "their predictions cannot be compared")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    unusable = [s.id for s in samples if s.label is None or not (s.mask or s.boxes_of(s.label))]
    if unusable:
        raise ValueError(f"{len(unusable)} image(s) have no label or no box or mask of it (e.g. {unusable[0]}): the "
                         "comparison measures whether each model's evidence lies on the object")
    names = _names(models)

    def step(group: list[Sample]) -> list[dict]:
        photos = [read_image(sample.path) for sample in group]
        runs = []
        for model, layer in zip(models, layers):
            images, labels, explanation = _explained(model, layer, method, photos, group)
            runs.append((model, images, labels, explanation, _verdicts(model, explanation.outputs, labels)))
        agree = [a == b for a, b in zip(runs[0][4], runs[1][4])]
        agreeing = [i for i, same in enumerate(agree) if same]   # deletion and insertion on these only
        records = []
        for name, (model, images, labels, explanation, verdicts) in zip(names, runs):
            maps = explanation.maps[method]
            kind = "sigmoid" if model.task == "multilabel" else "probability"
            deletion, insertion = {}, {}
            if agreeing:
                rows = torch.tensor(agreeing, device=images.device)
                curves = deletion_insertion(model.model, images[rows], maps[rows], labels[rows], steps=steps,
                                            kind=kind)
                deletion = dict(zip(agreeing, auc(curves.deletion).tolist()))
                insertion = dict(zip(agreeing, auc(curves.insertion).tolist()))
            tolerance = 15 * max(model.preprocessing.size) / 224
            for i, (sample, photo) in enumerate(zip(group, photos)):
                correct = verdicts[i] == (1 if model.task == "multilabel" else sample.label)
                record = {"id": sample.id, "label": sample.label, "model": name, "method": method,
                          "agree": agree[i], "predicted": verdicts[i], "correct": correct}
                if agree[i]:
                    inside = object_mask(sample, photo.size, model)
                    saliency = maps[i].cpu()
                    record |= {"energy_object": energy_in(saliency, inside),
                               "pointing": float(pointing_hit(saliency, inside, tolerance)),
                               "deletion": deletion[i], "insertion": insertion[i]}
                records.append(record)
        return records

    settings = {"models": [model_settings(model, layer or model.layer) for model, layer in zip(models, layers)],
                "method": method, "steps": steps}
    return resume_records(Path(out) / "trust.jsonl", samples, step, settings=settings, per_step=images_per_step,
                          desc="comparing models", resume=resume, progress=progress)


def trust_summary(records: Sequence[dict]) -> list[dict]:
    """One row per model, over the images on which the two agree: ``images``, ``accuracy`` (on them),
    the mean of every measure of :data:`TRUST_COLUMNS`, and ``wins``: the share of those images on
    which this model's map puts more energy on the object than the other's (ties count half). The
    row with the larger ``wins`` is marked ``trust``."""
    names = list(dict.fromkeys(r["model"] for r in records))
    agreed = {name: {r["id"]: r for r in records if r["model"] == name and r["agree"]} for name in names}
    rows = []
    for name in names:
        mine = agreed[name]
        other = agreed[next(n for n in names if n != name)] if len(names) == 2 else {}
        row = {"model": name, "images": len(mine),
               "accuracy": sum(r["correct"] for r in mine.values()) / len(mine) if mine else float("nan")}
        for column in TRUST_COLUMNS:
            row[column] = sum(r[column] for r in mine.values()) / len(mine) if mine else float("nan")
        paired = [(r["energy_object"], other[i]["energy_object"]) for i, r in mine.items() if i in other]
        row["wins"] = (sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in paired) / len(paired)
                       if paired else float("nan"))
        rows.append(row)
    best = max(rows, key=lambda row: row["wins"] if row["wins"] == row["wins"] else -1, default=None)
    for row in rows:
        row["trust"] = row is best and row["wins"] > 0.5
    return rows


def trust_sheet(models: Sequence[LoadedModel], samples: Sequence[Sample], records: Sequence[dict], out: str | Path,
                *, count: int = 6, layers: Sequence[str | None] = (None, None)) -> Path:
    """The ``count`` agreeing images on which the two models' maps put the most different shares of
    energy on the object: each as the first model saw it, and each model's map of the label.
    Written to ``out/trust.jpg``; returns the path."""
    names = _names(models)
    energy = {(r["id"], r["model"]): r["energy_object"] for r in records if r["agree"]}
    method = next((r["method"] for r in records), "gradcam")
    gap = {s.id: abs(energy[s.id, names[0]] - energy[s.id, names[1]]) for s in samples
           if (s.id, names[0]) in energy and (s.id, names[1]) in energy}
    chosen = sorted((s for s in samples if s.id in gap), key=lambda s: -gap[s.id])[:count]
    if not chosen:
        raise ValueError("no image on which both models agree: nothing to compare")
    photos = [read_image(sample.path) for sample in chosen]
    columns = []
    for model, layer in zip(models, layers):
        columns.append(_explained(model, layer, method, photos, chosen)[2].maps[method])
    first = models[0].preprocessing
    scale = max(1, 224 // max(first.size))  # small inputs (64 px scenes) drawn larger
    panels, titles, labels_text = [], [], []
    for i, (sample, photo) in enumerate(zip(chosen, photos)):
        seen = first.fit_image(photo)
        seen = seen.resize((seen.width * scale, seen.height * scale), Image.NEAREST)
        panels.append([seen] + [overlay(model.preprocessing.fit_image(photo), column[i])
                                for model, column in zip(models, columns)])
        titles.append(["the image"] + [f"{name}: {energy[sample.id, name]:.0%} on object" for name in names])
        label = models[0].class_names[sample.label]
        labels_text.append(f"{sample.id}: {label}, predicted alike by both")
    path = Path(out) / "trust.jpg"
    grid(panels, titles, labels_text, panel_size=220).save(path, quality=88)
    return path


def _explained(model: LoadedModel, layer: str | None, method: str, photos: Sequence[Image.Image],
               samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor, Explanation]:
    """``photos`` as ``model`` sees them, their labels and ``method``'s maps of the labels at
    ``layer`` (the model's own for ``None``), on the model's device."""
    images = model.batch(photos)
    labels = torch.tensor([sample.label for sample in samples], device=model.device)
    return images, labels, explain(model.model, images, layer or model.layer, method, labels)
