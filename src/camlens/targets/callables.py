"""Any differentiable function of the output as a target."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .base import Target, TargetScores

__all__ = ["CallableTarget"]


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

    def rescore(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        return self.fn(output)
