r"""Do maps point at the right object? Measured on :mod:`camlens.data.scenes`, where each caption
word, question, class and box names one object whose pixels are known.

For a scene and a task, :func:`scene_queries` gives what to explain and, for every row of the
explanation, the object it should point at:

- ``classifier`` (and ``vit``, the same task): each label present (a shape or a colour) → its
  object (a class target);
- ``captioner``: each colour and shape word of the scene's caption → its object (a
  :class:`~camlens.targets.CaptionTarget`, teacher-forced, one row per word);
- ``vqa``: each question → the object it asks about (the model's answer, given image and question);
- ``detector``: each object's box and shape → that object (a :class:`~camlens.targets.BoxTarget`
  on the detector's own detections; a box it misses scores 0 and its map points nowhere).

:func:`point_at_objects` then scores every method's maps: the pointing game (a hit when the map's
maximum lies on the object's pixels, or within the Grad-CAM paper's 15 px scaled to the image:
15 · 64 / 224 ≈ 4.3 px on a 64 px scene) and the energy-based pointing game (the share of the
map inside the object's box).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from ..data.geometry import Box
from ..data.scenes import LABELS, SHAPES, VOCABULARY, Scene, scene_tensors
from ..engine.inputs import as_inputs
from ..engine.modelstate import model_device
from ..explain import explain
from ..metrics.localization import boxes_mask, energy_in, pointing_hit
from ..models.scenes import LAYER, caption_tokens, question_tokens
from ..targets import BoxTarget, CaptionTarget, Classes, Target

__all__ = ["SceneQuery", "scene_queries", "point_at_objects", "SCENE_TOLERANCE"]

SCENE_TOLERANCE = 15 * 64 / 224  # the pointing game's 15 px at 224 px, scaled to a 64 px scene


@dataclass(frozen=True)
class SceneQuery:
    """What to explain on one scene (``inputs``, ``target``) and, per row of the explanation, the
    object it should point at: its pixels (``regions``) and its box (``boxes``)."""

    inputs: object
    target: Target | None
    regions: list[torch.Tensor]
    boxes: list[Box]


def scene_queries(task: str, scene: Scene) -> SceneQuery:
    """The queries of one scene for a scene model's ``task`` (see the module docstring)."""
    image = scene_tensors([scene])
    if task in ("classifier", "vit"):
        labels = [label for label in LABELS if scene.labels[LABELS.index(label)]]
        about = [scene.object_with(label) for label in labels]
        inputs, target = image, Classes([LABELS.index(label) for label in labels])
    elif task == "captioner":
        prefix, targets = caption_tokens([scene.caption])
        words = [(position, index) for position, index in enumerate(scene.caption_objects) if index is not None]
        about = [index for _, index in words]
        inputs, target = (image, prefix), CaptionTarget(targets, words=[p for p, _ in words], pad=VOCABULARY.pad)
    elif task == "vqa":
        questions = scene.questions
        about = [q.about for q in questions]
        inputs, target = (image.expand(len(questions), -1, -1, -1), question_tokens([q.text for q in questions])), None
    elif task == "detector":
        about = list(range(len(scene.objects)))
        target = BoxTarget([o.box for o in scene.objects], [SHAPES.index(o.shape) for o in scene.objects],
                           missing="zero")
        inputs = image
    else:
        raise ValueError(f"unknown scene task {task!r}")
    objects = [scene.objects[i] for i in about]
    return SceneQuery(inputs, target, [torch.from_numpy(o.mask) for o in objects], [o.box for o in objects])


def point_at_objects(task: str, model: nn.Module, scenes: Sequence[Scene], methods: Sequence[str],
                     tolerance: float = SCENE_TOLERANCE, progress: bool = True, layer: str = LAYER) -> dict[str, dict[str, float]]:
    """For each method, the mean ``pointing`` hit rate and ``energy`` share over every row of every
    scene (see the module docstring), and ``rows``: how many rows were scored. The scenes are
    explained on the model's device, at ``layer`` (the CNNs' last block by default; for the
    scene ViT, ``blocks.2.norm1``, its ``"auto"``)."""
    device = model_device(model)
    hits = {m: [] for m in methods}
    energy = {m: [] for m in methods}
    for scene in tqdm(scenes, desc=f"pointing ({task})", unit="scene", disable=not progress):
        query = scene_queries(task, scene)
        explanation = explain(model, as_inputs(query.inputs).to(device), layer=layer, methods=methods,
                              target=query.target)
        size = tuple(explanation.maps[methods[0]].shape[-2:])
        for row, (region, box) in enumerate(zip(query.regions, query.boxes, strict=True)):
            region = region.to(device)
            box_region = boxes_mask([box], size).to(device)
            for m in methods:
                saliency = explanation.maps[m][row].clamp_min(0)
                hits[m].append(pointing_hit(saliency, region, tolerance))
                energy[m].append(energy_in(saliency, box_region))
    return {m: {"pointing": sum(hits[m]) / len(hits[m]), "energy": sum(energy[m]) / len(energy[m]),
                "rows": len(hits[m])} for m in methods}
