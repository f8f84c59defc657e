r"""Textual explanations from neuron importance (Grad-CAM paper, after Network Dissection, Bau et
al., CVPR 2017): the channels a method weighs most for a target, each named by the concept it
detects.

:func:`dissect` names every channel of a layer. Over a probe set of images with concept masks
:math:`L_c` (shapes, colours, the background of synthetic scenes — :func:`~camlens.data.scenes.scene_concepts` —
or any segmentation), channel :math:`k`'s activation is upsampled (bilinearly) to the image and
thresholded at its ``quantile`` over the whole probe set (:math:`T_k`, the top 0.5 % by default,
as Network Dissection does), and

.. math:: \mathrm{IoU}_{k,c} = \frac{\sum_x |\{A_k(x) > T_k\} \cap L_c(x)|}{\sum_x |\{A_k(x) > T_k\} \cup L_c(x)|}

summed over the probe images :math:`x`. A channel is named by its best concept if that IoU
reaches Network Dissection's detector cut, 0.04 (:data:`DETECTOR_IOU`); a channel below it on
every concept is named ``"none"``, and never counts as naming the class it explains.
:func:`neuron_text` then turns one explained row into a sentence — "predicted 'red' because of
channels 17 (red, IoU 0.41), 3 (circle, IoU 0.22), …" (as "the evidence for 'red' comes from
channels …": the class explained need not be the one predicted) — from the ``k`` channels of largest
weight :math:`\alpha_k` (Grad-CAM's, or any method that has channel weights), with a table of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..data import Preprocessing, Sample, mask_in_input
from ..data.scenes import LABELS, Scene, scene_tensors
from ..engine.after import chunks
from ..engine.capture import record_forward
from ..engine.layers import resolve_layer
from ..engine.modelstate import evaluation_mode
from ..engine.tokens import TokenLayout, layout_finder
from ..explain import explain
from ..explanation import Explanation
from ..models import LoadedModel
from ..targets import Classes

__all__ = ["Dissection", "dissect", "neuron_text", "NeuronText", "mask_concepts", "concept_agreement",
           "scene_texts", "chance_agreement", "DETECTOR_IOU", "NO_CONCEPT"]

DETECTOR_IOU = 0.04   # Network Dissection's cut: a channel whose best IoU is below it detects nothing
NO_CONCEPT = "none"


@dataclass(frozen=True)
class Dissection:
    """Per channel of ``layer``: its threshold ``thresholds`` (K,) and its IoU with every concept
    ``iou`` (K, len(concepts))."""

    layer: str
    concepts: tuple[str, ...]
    thresholds: torch.Tensor
    iou: torch.Tensor

    def name(self, channel: int) -> tuple[str, float]:
        """The channel's best concept and its IoU; ``"none"`` where that IoU is below
        :data:`DETECTOR_IOU` (a channel that detects no concept)."""
        best = int(self.iou[channel].argmax())
        iou = float(self.iou[channel, best])
        return (self.concepts[best] if iou >= DETECTOR_IOU else NO_CONCEPT), iou

    def names(self) -> list[str]:
        """Every channel's name (:meth:`name`), in channel order."""
        return [self.name(channel)[0] for channel in range(len(self.thresholds))]


def dissect(model: nn.Module, layer: str, images: torch.Tensor, concepts: Mapping[str, torch.Tensor], *,
            quantile: float = 0.995, batch_size: int = 64, tokens: TokenLayout | None = None,
            progress: bool = False) -> Dissection:
    """Name every channel of ``layer`` on a probe set (see the module docstring): ``images`` (N, C,
    H, W) preprocessed for ``model``, ``concepts`` a mask (N, H, W) per concept name. A token
    layer's channels are its features, laid out as :func:`~camlens.explain` does (``tokens``, or
    found from the model). Two passes over the probe set: one for the thresholds, one for the IoUs."""
    if not concepts:
        raise ValueError("no concept to name channels by")
    if NO_CONCEPT in concepts:
        raise ValueError(f"a concept may not be named {NO_CONCEPT!r}: that names a channel that detects nothing")
    wrong = [name for name, mask in concepts.items() if mask.shape != (images.shape[0], *images.shape[-2:])]
    if wrong:
        raise ValueError(f"concept masks must be (N, H, W) = {(images.shape[0], *images.shape[-2:])}, one per probe "
                         f"image; {', '.join(wrong)} are not")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), not {quantile}")
    device = images.device
    layer_name, module = resolve_layer(model, layer)
    parts = list(chunks(images.shape[0], batch_size))
    find_layout = layout_finder(model, tuple(images.shape[-2:]), tokens)
    with evaluation_mode(model), torch.no_grad():
        activations = [record_forward(model, images[part], {layer_name: module}, find_layout=find_layout)
                       .activations(layer_name).detach()
                       for part in tqdm(parts, desc="dissecting", unit="batch", disable=not progress)]
    everything = torch.cat([a.transpose(0, 1).flatten(1) for a in activations], dim=1)  # (K, N·h·w)
    step = -(-everything.shape[1] // (1 << 24))  # torch.quantile takes at most 2^24 values a row: every step-th
    thresholds = torch.quantile(everything[:, ::step].float(), quantile, dim=1).to(everything.dtype)
    names = tuple(concepts)
    masks = torch.stack([concepts[name].to(device) for name in names], dim=1)                # (N, C, H, W)
    intersection = torch.zeros(len(thresholds), len(names), device=device)
    union = torch.zeros_like(intersection)
    for part, activation in zip(parts, activations):
        upsampled = F.interpolate(activation, size=images.shape[-2:], mode="bilinear", align_corners=False)
        fired = (upsampled > thresholds.view(1, -1, 1, 1)).float()                            # (n, K, H, W)
        truth = masks[part].float()                                                           # (n, C, H, W)
        both = torch.einsum("nkhw,nchw->kc", fired, truth)
        intersection += both
        union += fired.sum(dim=(0, 2, 3))[:, None] + truth.sum(dim=(0, 2, 3))[None, :] - both
    iou = torch.where(union > 0, intersection / union.clamp_min(1), torch.zeros_like(union))
    return Dissection(layer_name, names, thresholds, iou)


@dataclass(frozen=True)
class NeuronText:
    """A sentence and its table: per channel ``(channel, weight, concept, iou)``, largest weight first."""

    sentence: str
    channels: tuple[tuple[int, float, str, float], ...]


def neuron_text(explanation: Explanation, row: int, dissection: Dissection, class_names: Sequence[str],
                method: str = "gradcam", k: int = 5) -> NeuronText:
    """The textual explanation of ``explanation``'s row ``row``: its ``k`` channels of largest
    positive weight under ``method``, named by ``dissection`` (see the module docstring)."""
    if method not in explanation.weights:
        raise ValueError(f"{method} has no channel weights in this explanation (methods with them: "
                         f"{', '.join(explanation.weights) or 'none'})")
    if explanation.layer != dissection.layer:
        raise ValueError(f"the explanation is of layer {explanation.layer!r}, the dissection of {dissection.layer!r}")
    weights = explanation.weights[method][row].float().cpu()
    order = [int(c) for c in weights.argsort(descending=True)[:k] if weights[c] > 0]
    channels = tuple((c, float(weights[c]), *dissection.name(c)) for c in order)
    target = int(explanation.targets[row])
    what = class_names[target] if 0 <= target < len(class_names) else f"output {target}"
    if not channels:
        return NeuronText(f"nothing in {dissection.layer} speaks for {what!r}: no channel has a positive weight", ())
    named = ", ".join(f"{c} ({concept}, IoU {iou:.2f})" for c, _, concept, iou in channels)
    return NeuronText(f"the evidence for {what!r} comes from channels {named}", channels)


def mask_concepts(samples: Sequence[Sample], preprocessing: Preprocessing, names: Mapping[int, str]) -> dict[str, torch.Tensor]:
    """Concept masks (N, H, W) in the model input's pixels from a segmented dataset: for each
    index of ``names`` (a value of the samples' mask images), the pixels that hold it. Every
    sample needs a mask."""
    missing = [s.id for s in samples if s.mask is None]
    if missing:
        raise ValueError(f"{len(missing)} probe image(s) have no mask (e.g. {missing[0]}): concepts come from masks")
    return {name: torch.stack([mask_in_input(s.mask, preprocessing, foreground={index}) for s in samples])
            for index, name in names.items()}


def concept_agreement(texts: Sequence[NeuronText], explained: Sequence[str]) -> float:
    """How often the named concepts of the channels of textual explanations are the very class
    each explains (``explained[i]`` for ``texts[i]``): the share over every listed channel, a
    channel named ``"none"`` counting as a miss."""
    matches = [concept == name for text, name in zip(texts, explained) for _, _, concept, _ in text.channels]
    return sum(matches) / len(matches) if matches else float("nan")


def scene_texts(model: LoadedModel, dissection: Dissection, batch: Sequence[Scene], method: str = "gradcam",
                k: int = 5) -> tuple[list[NeuronText], list[str]]:
    """The textual explanation of every label present in every scene of ``batch`` (one
    :func:`explain` per scene), and the labels explained, for :func:`concept_agreement`."""
    texts, explained = [], []
    for scene in batch:
        labels = [i for i, present in enumerate(scene.labels.tolist()) if present]
        explanation = explain(model.model, scene_tensors([scene]).to(model.device), dissection.layer, method,
                              Classes(labels))
        texts += [neuron_text(explanation, row, dissection, model.class_names, method, k) for row in range(len(labels))]
        explained += [LABELS[label] for label in labels]
    return texts, explained


def chance_agreement(dissection: Dissection, explained: Sequence[str]) -> float:
    """What :func:`concept_agreement` would be for channels drawn at random: the share of the
    channels named by each explained label, averaged over ``explained``."""
    names = dissection.names()
    return sum(names.count(label) for label in explained) / len(names) / len(explained)
