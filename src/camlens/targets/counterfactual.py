"""Grad-CAM's counterfactual explanations (Selvaraju et al., §5) as a target."""

from __future__ import annotations

import torch

from .base import Target, TargetScores
from .resolve import as_target

__all__ = ["Counterfactual"]


class Counterfactual(Target):
    """Grad-CAM's counterfactual explanation: the negated score of ``target``, so that gradients
    point to evidence *against* the class (regions whose removal would raise its score)."""

    def __init__(self, target: object = None):
        self.target = as_target(target)

    def __call__(self, output: torch.Tensor) -> TargetScores:
        inner = self.target(output)
        return TargetScores(-inner.scores, inner.image_index, inner.classes, inner.positions, inner.per_image)

    @property
    def structured(self) -> bool:
        return self.target.structured

    def rescore(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        return -self.target.rescore(output, classes, image_index, positions)

    def confidence(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor,
                   positions: torch.Tensor | None = None) -> torch.Tensor:
        """The inner target's confidence, not negated: Score-CAM weighs masks by how much of the
        explained quantity they keep, and a negated probability would zero every map."""
        return self.target.confidence(output, classes, image_index, positions)
