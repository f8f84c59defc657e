"""Ablation-CAM (Desai & Ramaswamy, WACV 2020): the score's drop when one map is zeroed."""

from __future__ import annotations

import torch

from .evidence import Evidence

__all__ = ["ablation_weights"]


def ablation_weights(evidence: Evidence) -> torch.Tensor:
    r"""Ablation-CAM (Desai & Ramaswamy, WACV 2020): the relative drop of the score when map k is
    set to zero, evaluated on the network after the layer only,

    .. math:: w_k = \frac{y^c - y^c_{A^k = 0}}{|y^c|}.

    The paper divides by :math:`y^c`; for :math:`y^c < 0` that would silently flip every weight's
    sign, so camlens divides by :math:`|y^c|` (a drop in score always counts as evidence *for*
    the class), and by 1 where :math:`y^c = 0`. A map that is already all zero cannot change the
    score when zeroed: its weight is exactly 0 and it is not evaluated. Where the network after
    the layer begins with channel-wise operations and a linear layer (VGG, ResNet, MobileNet,
    EfficientNet heads), the K ablations share one pass over that layer (:mod:`camlens.engine.channelwise`).
    """
    activations = evidence.activations
    scores = evidence.scores.detach()
    ablated_scores = scores[:, None].repeat(1, activations.shape[1])  # all-zero maps keep the score
    rows, ablated = (activations.flatten(2) != 0).any(dim=2).nonzero(as_tuple=True)
    with torch.inference_mode():
        ablated_scores[rows, ablated] = evidence.values_zeroing(rows, ablated)
    scale = torch.where(scores == 0, torch.ones_like(scores), scores.abs())
    return (scores[:, None] - ablated_scores) / scale[:, None]
