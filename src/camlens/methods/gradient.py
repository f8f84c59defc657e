r"""The gradient family: each method is its weight rule (or, for the spatial ones, its map rule).

Notation: ``A`` are the layer's activations (N, K, h, w), ``G = ∂y^c/∂A`` their gradients,
``Z = h·w``. A *weight* rule gives channel weights ``w`` (N, K) and the map
``L = ReLU(Σ_k w_k A^k)``; a *spatial* rule gives the map before its ReLU directly.

A new gradient method is one function here and one line in :data:`camlens.methods.METHODS`.
"""

from __future__ import annotations

import torch

__all__ = [
    "gradcam_weights", "counterfactual_weights", "gradcampp_weights", "xgradcam_weights", "layercam_saliency",
    "hirescam_saliency", "weighted_sum",
]


def _safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator``, and exactly 0 where the denominator is 0 (no epsilon)."""
    zero = denominator == 0
    return torch.where(zero, torch.zeros_like(numerator), numerator / torch.where(zero, 1, denominator))


def gradcam_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    r"""Grad-CAM (Selvaraju et al., ICCV 2017): the global average of the gradients,
    :math:`w_k = \frac{1}{Z} \sum_{ij} \partial y^c / \partial A^k_{ij}`."""
    return gradients.mean(dim=(2, 3))


def counterfactual_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    r"""Grad-CAM's counterfactual explanation (Selvaraju et al., §5): negated gradients,
    :math:`w_k = \frac{1}{Z} \sum_{ij} -\partial y^c / \partial A^k_{ij}`: regions whose removal
    would make the network more confident in c."""
    return -gradients.mean(dim=(2, 3))


def gradcampp_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    r"""Grad-CAM++ (Chattopadhyay et al., WACV 2018), the paper's closed form:

    .. math:: w_k = \sum_{ij} \alpha^k_{ij} \mathrm{ReLU}(g^k_{ij}),\quad
              \alpha^k_{ij} = \frac{(g^k_{ij})^2}{2 (g^k_{ij})^2 + \sum_{ab} A^k_{ab} (g^k_{ij})^3}

    with ``g = ∂y^c/∂A``. The powers of ``g`` stand for the higher derivatives of ``exp(y^c)``
    (the paper's Eq. 19 for an exponential output), so the logit's gradients are used directly.
    ``α`` is exactly 0 where its denominator is 0 (no epsilon that shifts other values).
    """
    squared = gradients.pow(2)
    denominator = 2 * squared + activations.sum(dim=(2, 3), keepdim=True) * gradients.pow(3)
    alpha = _safe_divide(squared, denominator)
    return (alpha * gradients.clamp_min(0)).sum(dim=(2, 3))


def xgradcam_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    r"""XGrad-CAM (Fu et al., BMVC 2020): activation-weighted gradients, the first-order solution
    of the Sensitivity and Conservation axioms,

    .. math:: w_k = \sum_{ij} \frac{A^k_{ij}}{\sum_{ab} A^k_{ab}} \, \partial y^c / \partial A^k_{ij}.

    Where :math:`\sum_{ab} A^k_{ab} = 0` the weight is 0 (the official code adds ε = 1e-7 to the
    denominator instead; for the non-negative maps of a ReLU layer both agree: an all-zero map
    contributes nothing to the map)."""
    return _safe_divide((activations * gradients).sum(dim=(2, 3)), activations.sum(dim=(2, 3)))


def layercam_saliency(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    r"""LayerCAM (Jiang et al., IEEE TIP 2021): element-wise positive gradients,
    :math:`L_{ij} = \mathrm{ReLU}(\sum_k \mathrm{ReLU}(g^k_{ij}) A^k_{ij})` (the outer ReLU is applied by the caller)."""
    return (gradients.clamp_min(0) * activations).sum(dim=1)


def hirescam_saliency(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    r"""HiResCAM (Draelos & Carin, 2020): element-wise gradients without averaging,
    :math:`L_{ij} = \mathrm{ReLU}(\sum_k g^k_{ij} A^k_{ij})`; faithful to the model's computation
    for heads that end in a linear layer after global pooling."""
    return (gradients * activations).sum(dim=1)


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    r"""The map before its ReLU, :math:`\sum_k w_k A^k`, for weights (N, K) and activations (N, K, h, w)."""
    return torch.einsum("nk,nkhw->nhw", weights, activations)
