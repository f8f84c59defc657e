"""Class targets for (B, num_classes) outputs: one class per image, several, the top k."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from .base import Target, TargetScores

__all__ = ["ScoreKind", "ClassTarget", "Classes", "TopK", "check_score"]

ScoreKind = Literal["logit", "softmax", "log_softmax"]
_SCORE_KINDS = ("logit", "softmax", "log_softmax")


class _ClassScore(Target):
    """Shared by the targets that score one class of a (B, num_classes) output."""

    score: ScoreKind

    def rescore(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        return _class_scores(output, self.score).gather(1, classes.view(-1, 1)).view(-1)

    def confidence(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor,
                   positions: torch.Tensor | None = None) -> torch.Tensor:
        """The class's softmax probability, whatever ``score`` is (Score-CAM's official code)."""
        return _class_scores(output, "softmax").gather(1, classes.view(-1, 1)).view(-1)


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


def check_score(score: str) -> None:
    if score not in _SCORE_KINDS:
        raise ValueError(f"score must be one of {_SCORE_KINDS}, not {score!r}")


class ClassTarget(_ClassScore):
    """The score of class ``classes`` (one index for every image, or one per image).

    ``score``: ``"logit"`` (default, the papers' choice: y^c before softmax), ``"softmax"`` or
    ``"log_softmax"``.
    """

    def __init__(self, classes: int | Sequence[int] | torch.Tensor, score: ScoreKind = "logit"):
        check_score(score)
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
        # indices given as Python ints (or NumPy) are checked on the host; a tensor of them where
        # it lies, which reads one value back (a synchronization on a GPU)
        if isinstance(self.classes, torch.Tensor):
            bad = (classes < 0) | (classes >= num_classes)
            first_bad = int(classes[bad][0]) if bad.any() else None
        else:
            first_bad = next((c for c in np.asarray(self.classes).ravel().tolist() if not 0 <= c < num_classes), None)
        if first_bad is not None:
            raise ValueError(
                f"class index {first_bad} is out of range: the model has {num_classes} classes (0..{num_classes - 1})"
            )
        image_index = torch.arange(batch, device=output.device)
        return TargetScores(scores[image_index, classes], image_index, classes, per_image=1)


class Classes(_ClassScore):
    """Every image explained for each of ``classes``: len(classes) rows per image, image-major."""

    def __init__(self, classes: Sequence[int], score: ScoreKind = "logit"):
        check_score(score)
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
        return TargetScores(scores[image_index, classes], image_index, classes, per_image=len(self.classes))


class TopK(_ClassScore):
    """The ``k`` highest-scoring classes of each image (by logit), k rows per image, best first."""

    def __init__(self, k: int = 1, score: ScoreKind = "logit"):
        check_score(score)
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
        return TargetScores(scores[image_index, classes], image_index, classes, per_image=self.k)
