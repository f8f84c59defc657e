"""What to explain: functions from the model's output to one differentiable scalar per explanation.

A target returns a :class:`TargetScores`: ``scores`` (N,), and for each of the N rows the image it
belongs to and the class it names (``-1`` when it names none). One row per image is the common case;
:class:`TopK` gives k rows per image (image-major: image 0's top-1..top-k, then image 1's, ...).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = [
    "TargetScores", "Target", "ClassTarget", "Classes", "TopK", "Counterfactual", "SegmentationRegion",
    "CallableTarget", "as_target", "ScoreKind",
]

ScoreKind = Literal["logit", "softmax", "log_softmax"]
_SCORE_KINDS = ("logit", "softmax", "log_softmax")


@dataclass(frozen=True)
class TargetScores:
    scores: torch.Tensor       # (N,) differentiable
    image_index: torch.Tensor  # (N,) long: the image each row explains
    classes: torch.Tensor      # (N,) long: the class each row explains, -1 for none


class Target:
    """Base class: ``target(output) -> TargetScores``, and ``rescore``: the same quantity on the
    output of a modified input or activation, for rows whose class and image are already fixed
    (perturbation methods must not re-rank the classes of a perturbed output)."""

    def __call__(self, output: torch.Tensor) -> TargetScores:  # pragma: no cover - interface
        raise NotImplementedError

    def rescore(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        """Scores (M,) of ``output`` (M, ...) for row m's class ``classes[m]`` of image ``image_index[m]``."""
        raise NotImplementedError  # pragma: no cover - interface


class _ClassScore(Target):
    """Shared by the targets that score one class of a (B, num_classes) output."""

    score: ScoreKind

    def rescore(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        return _class_scores(output, self.score).gather(1, classes.view(-1, 1)).view(-1)


def _class_scores(output: torch.Tensor, score: ScoreKind) -> torch.Tensor:
    if output.dim() != 2:
        raise ValueError(
            f"a class target needs a (B, num_classes) output; the model output has shape {tuple(output.shape)}. "
            "Use SegmentationRegion for dense outputs, a callable target, or output=... to pick another output"
        )
    if score == "logit":
        return output
    if score == "softmax":
        return output.softmax(dim=1)
    return output.log_softmax(dim=1)


def _check_score(score: str) -> None:
    if score not in _SCORE_KINDS:
        raise ValueError(f"score must be one of {_SCORE_KINDS}, not {score!r}")


class ClassTarget(_ClassScore):
    """The score of class ``classes`` (one index for every image, or one per image).

    ``score``: ``"logit"`` (default, the papers' choice: y^c before softmax), ``"softmax"`` or
    ``"log_softmax"``.
    """

    def __init__(self, classes: int | Sequence[int] | torch.Tensor, score: ScoreKind = "logit"):
        _check_score(score)
        self.classes = classes
        self.score = score

    def __call__(self, output: torch.Tensor) -> TargetScores:
        scores = _class_scores(output, self.score)
        batch, num_classes = scores.shape
        classes = torch.as_tensor(self.classes, device=output.device)
        if classes.numel() == 0:
            classes = classes.long()  # an empty list has no dtype to check; its length is the error
        if classes.is_floating_point() or classes.is_complex() or classes.dtype == torch.bool:
            raise TypeError(f"class indices must be integers, got {classes.dtype}")
        classes = classes.long()
        if classes.dim() == 0:
            classes = classes.expand(batch)
        elif classes.dim() != 1 or classes.numel() != batch:
            raise ValueError(
                f"got {classes.numel()} target classes for a batch of {batch} images; "
                "give one class for all images or exactly one per image"
            )
        bad = (classes < 0) | (classes >= num_classes)
        if bad.any():
            raise ValueError(
                f"class index {int(classes[bad][0])} is out of range: the model has {num_classes} classes (0..{num_classes - 1})"
            )
        image_index = torch.arange(batch, device=output.device)
        return TargetScores(scores[image_index, classes], image_index, classes)


class Classes(_ClassScore):
    """Every image explained for each of ``classes``: len(classes) rows per image, image-major."""

    def __init__(self, classes: Sequence[int], score: ScoreKind = "logit"):
        _check_score(score)
        if len(classes) == 0:
            raise ValueError("Classes needs at least one class index")
        self.classes = [int(c) for c in classes]
        self.score = score

    def __call__(self, output: torch.Tensor) -> TargetScores:
        scores = _class_scores(output, self.score)
        batch, num_classes = scores.shape
        for cls in self.classes:
            if not 0 <= cls < num_classes:
                raise ValueError(f"class index {cls} is out of range: the model has {num_classes} classes (0..{num_classes - 1})")
        classes = torch.tensor(self.classes, device=output.device).repeat(batch)
        image_index = torch.arange(batch, device=output.device).repeat_interleave(len(self.classes))
        return TargetScores(scores[image_index, classes], image_index, classes)


class TopK(_ClassScore):
    """The ``k`` highest-scoring classes of each image (by logit), k rows per image, best first."""

    def __init__(self, k: int = 1, score: ScoreKind = "logit"):
        _check_score(score)
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, not {k!r}")
        self.k = k
        self.score = score

    def __call__(self, output: torch.Tensor) -> TargetScores:
        scores = _class_scores(output, self.score)
        batch, num_classes = scores.shape
        if self.k > num_classes:
            raise ValueError(f"top-{self.k} asked of a model with {num_classes} classes")
        classes = output.detach().topk(self.k, dim=1).indices.reshape(-1)
        image_index = torch.arange(batch, device=output.device).repeat_interleave(self.k)
        return TargetScores(scores[image_index, classes], image_index, classes)


class Counterfactual(Target):
    """Grad-CAM's counterfactual explanation: the negated score of ``target``, so that gradients
    point to evidence *against* the class (regions whose removal would raise its score)."""

    def __init__(self, target: object = None):
        self.target = as_target(target)

    def __call__(self, output: torch.Tensor) -> TargetScores:
        inner = self.target(output)
        return TargetScores(-inner.scores, inner.image_index, inner.classes)

    def rescore(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        return -self.target.rescore(output, classes, image_index)


class SegmentationRegion(Target):
    """For a dense output (B, C, H, W): the sum of class ``class_index``'s logits over ``mask``
    ((H, W) shared, or (B, H, W)); a float mask weights the pixels. Grad-CAM's semantic
    segmentation target."""

    def __init__(self, class_index: int, mask: torch.Tensor):
        self.class_index = class_index
        self.mask = mask

    def __call__(self, output: torch.Tensor) -> TargetScores:
        if output.dim() != 4:
            raise ValueError(f"SegmentationRegion needs a (B, C, H, W) output; got shape {tuple(output.shape)}")
        batch, num_classes, height, width = output.shape
        if not 0 <= self.class_index < num_classes:
            raise ValueError(f"class index {self.class_index} is out of range: the output has {num_classes} classes")
        mask = torch.as_tensor(self.mask, device=output.device).to(output.dtype)
        if mask.shape[-2:] != (height, width) or mask.dim() not in (2, 3) or (mask.dim() == 3 and mask.shape[0] != batch):
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not match the output's (B, H, W) = {(batch, height, width)}")
        scores = (output[:, self.class_index] * mask).sum(dim=(1, 2))
        image_index = torch.arange(batch, device=output.device)
        return TargetScores(scores, image_index, torch.full_like(image_index, self.class_index))

    def rescore(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        mask = torch.as_tensor(self.mask, device=output.device).to(output.dtype)
        if mask.dim() == 3:
            mask = mask[image_index]
        return (output[:, self.class_index] * mask).sum(dim=(-2, -1))


class CallableTarget(Target):
    """Any function ``fn(output) -> (B,)`` tensor: a caption's log-probability, a box score, ..."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        self.fn = fn

    def __call__(self, output: torch.Tensor) -> TargetScores:
        scores = self.fn(output)
        batch = output.shape[0]
        if not isinstance(scores, torch.Tensor) or scores.shape != (batch,):
            shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise ValueError(f"a target function must return one score per image, shape ({batch},); got {shape}")
        image_index = torch.arange(batch, device=output.device)
        return TargetScores(scores, image_index, torch.full_like(image_index, -1))

    def rescore(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        return self.fn(output)


def as_target(target: object) -> Target:
    """Normalize the ``target`` argument of :func:`camlens.explain`.

    ``None`` → the top-1 predicted class; ``"topK"`` (e.g. ``"top5"``) → :class:`TopK`; an int → that
    class for every image; a sequence or 1-D tensor of ints → one class per image (its length must be
    the batch size); a :class:`Target` → itself; any other callable → :class:`CallableTarget`.
    """
    if target is None:
        return TopK(1)
    if isinstance(target, Target):
        return target
    if isinstance(target, str):
        if target.startswith("top") and target[3:].isdigit():
            return TopK(int(target[3:]))
        raise ValueError(f"unknown target {target!r}; use a class index, 'top1', 'top5', ... or a Target")
    if isinstance(target, bool):
        raise TypeError("target must be a class index, not a bool")
    if isinstance(target, (numbers.Integral, Sequence, torch.Tensor)) or hasattr(target, "__array__"):
        return ClassTarget(target)
    if callable(target):
        return CallableTarget(target)
    raise TypeError(f"cannot use a {type(target).__name__} as a target")
