"""What every target is: a function from the model's output to one differentiable scalar per row.

A target returns a :class:`TargetScores`: ``scores`` (N,), and for each of the N rows the image it
belongs to and the class it names (``-1`` when it names none). One row per image is the common case;
:class:`~camlens.targets.TopK` gives k rows per image (image-major: image 0's top-1..top-k, then
image 1's, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["TargetScores", "Target"]


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
