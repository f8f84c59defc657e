"""A model ready to explain (:class:`LoadedModel`): the module, how photos become its inputs, its
class names and layers, and what it predicted — what every front end (the command line, the web
explorer) asks of a model."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image
from torch import nn

from ..data.labels import resolve_class
from ..data.preprocessing import Preprocessing
from ..engine.layers import LayerError, auto_layer, layer_output_shapes
from ..engine.modelstate import model_device
from ..engine.tokens import find_layout
from ..targets import Classes, CTCTarget, RegionScore, Target
from ..targets.resolve import top_k
from ..targets.sequences import greedy_ctc

__all__ = ["LoadedModel", "LayerInfo", "row_probability", "DENSE_TASKS", "READING_TASKS"]

# tasks whose output is score maps (B, C, h, w); their class names name the channels
DENSE_TASKS = frozenset({"face-detection", "text-detection"})
# tasks whose output is per-step scores (B, T, V) read by greedy CTC (blank 0); class names are the characters
READING_TASKS = frozenset({"text-reading"})


@dataclass(frozen=True)
class LayerInfo:
    """One layer of a model as :meth:`LoadedModel.layers` lists it: its ``name``, module
    ``kind`` (``"Conv2d"``), output ``shape`` on one input (``None`` where the output is not a
    tensor), whether a CAM can be made at it (``explainable``: spatial maps, or a transformer's
    tokens laid on the patch grid) and how its output lies on the image (``described``)."""

    name: str
    kind: str
    shape: tuple[int, ...] | None
    explainable: bool
    described: str


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to explain: the module (in eval mode), its preprocessing, its class names and
    the layer recommended for CAMs (``"auto"`` when none is known).

    Beyond classifiers: ``task`` says what the model outputs (``"classification"``,
    ``"multilabel"``, ``"captioning"``, ``"vqa"``, ``"detection"``); ``class_names`` name its
    classes, answers, tokens or detection labels. Models that read text turn it into their extra
    inputs: ``question(text, batch)`` gives the question's input tensors for ``batch`` images,
    ``caption(text, batch)`` the caption's input tensors and the
    :class:`~camlens.targets.CaptionTarget` that scores it word by word. ``embedding``, when
    known, maps images to the model's embedding (for :class:`~camlens.targets.SimilarityTarget`);
    its layers are the model's under ``model.``.
    """

    name: str
    model: nn.Module
    preprocessing: Preprocessing
    class_names: tuple[str, ...]
    layer: str = "auto"
    task: str = "classification"
    question: Callable[[str, int], tuple[torch.Tensor, ...]] | None = field(default=None, repr=False)
    caption: Callable[[str, int], tuple[tuple[torch.Tensor, ...], Target]] | None = field(default=None, repr=False)
    embedding: nn.Module | None = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        """Where the model's parameters (or buffers) are; the CPU for a model with none."""
        return model_device(self.model) or torch.device("cpu")

    def batch(self, photos: Sequence[Image.Image]) -> torch.Tensor:
        """``photos`` as the model sees them: each preprocessed, stacked (N, C, H, W), on the
        model's device."""
        return torch.stack([self.preprocessing(photo) for photo in photos]).to(self.device)

    def inputs(self, images: torch.Tensor) -> object:
        """What the model is called with for ``images`` when no text is given: the images, and for
        models that read text an empty question or caption."""
        if self.question is not None:
            return (images, *self.question("", images.shape[0]))
        if self.caption is not None:
            return (images, *self.caption("", images.shape[0])[0])
        return images

    def class_target(self, specs: Sequence[str]) -> Target:
        """The classes ``specs`` name: ``"top1"`` … ``"topK"`` alone, or class indices and whole
        names (as :func:`~camlens.data.resolve_class` reads them), one per item or
        comma-separated — ImageNet's class names hold no commas. A class named twice is explained
        once. ``ValueError`` names what cannot be read.

        Beyond classes: a text reader (:data:`READING_TASKS`) explains what it read, one row per
        character (:class:`~camlens.targets.CTCTarget`; ``specs`` must be empty or ``top1``); a
        model of score maps (:data:`DENSE_TASKS`) explains the sum of one channel's map (the
        channel ``specs`` names, by default the first) over the whole image."""
        specs = [piece.strip() for spec in specs for piece in spec.split(",") if piece.strip()] or ["top1"]
        if self.task in READING_TASKS:
            if specs != ["top1"]:
                raise ValueError(f"{self.name} reads text: it explains each character it read, and takes no target")
            return CTCTarget(blank=0)
        if self.task in DENSE_TASKS:
            if len(specs) > 1:
                raise ValueError(f"{self.name} outputs score maps: name one of them ({', '.join(self.class_names)})")
            channel = 0 if specs == ["top1"] else resolve_class(specs[0], self.class_names)
            return RegionScore(None, channel=channel)
        tops = [top for spec in specs if (top := top_k(spec)) is not None]
        if tops and len(specs) > 1:
            raise ValueError("topK cannot be combined with other targets")
        if tops:
            return tops[0]
        return Classes(list(dict.fromkeys(resolve_class(spec, self.class_names) for spec in specs)))

    def reading(self, outputs: torch.Tensor) -> list[str]:
        """What a text reader (:data:`READING_TASKS`) read in each image: the greedy CTC reading
        (:func:`~camlens.targets.sequences.greedy_ctc`) of its per-step scores (B, T, V), its class
        names being the tokens and token 0 the blank."""
        if self.task not in READING_TASKS:
            raise ValueError(f"{self.name} is a {self.task} model, not a text reader")
        return ["".join(self.class_names[token] for _, token in found) for found in greedy_ctc(outputs)]

    def predictions(self, outputs: object, image: int, k: int = 5) -> tuple[list[dict], torch.Tensor | None]:
        """What the model predicted for image ``image`` of a batch's ``outputs``, best first (at
        most ``k``; every detection of a detector), and its per-class probabilities — softmax, or
        sigmoid for a multi-label model; ``None`` where classes have none: captions, detections,
        embeddings."""
        if self.task == "detection" and isinstance(outputs, list):
            found = outputs[image]
            return [{"index": int(label), "name": self.class_names[int(label)], "probability": float(score),
                     "box": [round(float(v), 1) for v in box]}
                    for box, label, score in zip(found["boxes"], found["labels"], found["scores"])], None
        if not isinstance(outputs, torch.Tensor) or outputs.dim() != 2 or outputs.shape[1] != len(self.class_names):
            return [], None
        row = outputs[image].float().cpu()
        probabilities = row.sigmoid() if self.task == "multilabel" else row.softmax(dim=0)
        top = probabilities.topk(min(k, probabilities.numel()))
        return [{"index": int(c), "name": self.class_names[int(c)], "probability": float(v)} for v, c in zip(*top)], \
            probabilities

    def layers(self) -> tuple[list[LayerInfo], str]:
        """Every named layer in the order its output is produced on one blank input of the model's
        size (one forward pass, no download), and the layer ``"auto"`` finds there."""
        size = self.preprocessing.size
        inputs = self.inputs(torch.zeros(1, 3, *size))
        found = []
        for name, shape in layer_output_shapes(self.model, inputs).items():
            explainable, described = self._describe(name, shape, size)
            found.append(LayerInfo(name, type(self.model.get_submodule(name)).__name__, shape, explainable, described))
        return found, auto_layer(self.model, inputs)

    def _describe(self, name: str, shape: tuple[int, ...] | None, size: tuple[int, int]) -> tuple[bool, str]:
        """Whether a layer's output can be explained, and how it lies on the image: (B, C, h, w)
        maps, or a transformer's tokens with their layout."""
        if not shape:
            return False, "-"
        if len(shape) in (3, 4):
            try:
                layout = find_layout(self.model, name, torch.empty(shape, device="meta"), size)
            except LayerError:
                layout = None
            if layout is not None:
                where = f"channels-last {shape[1]}×{shape[2]} maps" if layout.channels_last else layout.describe()
                return True, f"{tuple(shape)}  {where}"
        return len(shape) == 4 and shape[-1] * shape[-2] > 1, str(tuple(shape))


def row_probability(probabilities: torch.Tensor | None, cls: int) -> float:
    """The probability of an explained row's class, NaN where there is none."""
    return float(probabilities[cls]) if probabilities is not None and cls >= 0 else math.nan
