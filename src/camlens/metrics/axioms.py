r"""XGrad-CAM's axioms as measurements, and the distance of a method's weights to Shapley values.

Fu et al. (BMVC 2020) ask two things of channel weights :math:`w_k` for a class score
:math:`S_c(A)` (the logit), with :math:`M = \sum_k w_k A^k` (before any ReLU):

* **Conservation**: :math:`\sum_{ij} M_{ij} = S_c(A)`.
* **Sensitivity**: for every k, :math:`\sum_{ij} w_k A^k_{ij} = S_c(A) - S_c(A \setminus A^k)`, the
  drop of the score when map k is set to zero, computed exactly on the network after the layer
  (Ablation-CAM evaluates exactly these drops, see :func:`removal_drops`).

All functions take tensors for N explained rows and return one value per row.
"""

from __future__ import annotations

import torch

from ..explanation import Explanation
from .faithfulness import spearman

__all__ = ["contributions", "conservation_error", "sensitivity_error", "sensitivity_correlation", "removal_drops",
           "shapley_distance", "shapley_correlation"]


def contributions(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    r""":math:`\sum_{ij} w_k A^k_{ij}` for each row and map (N, K)."""
    return weights * activations.sum(dim=(2, 3))


def conservation_error(weights: torch.Tensor, activations: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    r"""Per row :math:`|S_c - \sum_{ij} M_{ij}| \,/\, |S_c|` (0 for a conservative method)."""
    return (scores - contributions(weights, activations).sum(dim=1)).abs() / scores.abs()


def sensitivity_error(weights: torch.Tensor, activations: torch.Tensor, scores: torch.Tensor,
                      drops: torch.Tensor) -> torch.Tensor:
    r"""Per row :math:`\frac{1}{K}\sum_k |\sum_{ij} w_k A^k_{ij} - (S_c(A) - S_c(A \setminus A^k))| \,/\, |S_c|`,
    with ``drops`` the exact drops (N, K) (see :func:`removal_drops`)."""
    return (contributions(weights, activations) - drops).abs().mean(dim=1) / scores.abs()


def sensitivity_correlation(weights: torch.Tensor, activations: torch.Tensor, drops: torch.Tensor) -> torch.Tensor:
    """Per row, the Pearson correlation over the maps between each map's contribution and its
    exact drop (1 for a perfectly sensitive method; 0 where either is constant)."""
    a = contributions(weights, activations)
    a, b = a - a.mean(dim=1, keepdim=True), drops - drops.mean(dim=1, keepdim=True)
    denominator = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(denominator > 0, (a * b).sum(dim=1) / denominator.clamp_min(1e-30), torch.zeros_like(denominator))


def removal_drops(explanation: Explanation) -> torch.Tensor:
    r""":math:`S_c(A) - S_c(A \setminus A^k)` (N, K) from an explanation that includes
    ``ablationcam``, whose weights are exactly these drops divided by :math:`|S_c|` (by 1 where
    :math:`S_c = 0`)."""
    if "ablationcam" not in explanation.weights:
        raise ValueError("the exact drops come from Ablation-CAM: explain with methods including 'ablationcam'")
    scores = explanation.scores
    scale = torch.where(scores == 0, torch.ones_like(scores), scores.abs())
    return explanation.weights["ablationcam"] * scale[:, None]


def shapley_distance(weights: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    r"""Per row :math:`\lVert \hat w - \hat\phi \rVert_2` between the weights and the Shapley
    values, each scaled to unit L2 norm: the maps are compared up to scale (they are normalized
    before anyone looks at them), so Grad-CAM's gradient means and Shapley values in score units
    are comparable. 0 is perfect, 2 is the opposite direction."""
    unit = lambda values: values / values.norm(dim=1, keepdim=True).clamp_min(1e-30)  # noqa: E731
    return (unit(weights) - unit(reference)).norm(dim=1)


def shapley_correlation(weights: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per row, the Spearman rank correlation over the maps between the weights and the Shapley values."""
    return spearman(weights, reference)
