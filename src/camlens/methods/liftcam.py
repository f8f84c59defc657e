r"""LIFT-CAM (Jung & Oh, ICCV 2021): each map's DeepLIFT contribution through the network after the layer."""

from __future__ import annotations

import torch

from ..engine.after import chunks
from .deeplift import RescaleRule
from .evidence import Evidence

__all__ = ["liftcam_weights"]


def liftcam_weights(evidence: Evidence) -> torch.Tensor:
    r"""LIFT-CAM (Jung & Oh, ICCV 2021): each map's contribution by DeepLIFT (Rescale rule, zero
    reference) through the network after the layer,

    .. math:: w_k = \sum_{ij} m^k_{ij} (A^k_{ij} - 0),

    an approximation of the Shapley value of map k in the game "keep these maps, zero the
    others". Summation-to-delta holds: :math:`\sum_k w_k = y^c(A) - y^c(0)` for scores linear in
    the model output (logits; a softmax score is differentiated as is). See :mod:`camlens.methods.deeplift`.
    """
    activations = evidence.activations
    rows_count = activations.shape[0]
    weights = activations.new_empty(activations.shape[:2])
    per_chunk = max(1, evidence.batch_size // 2)  # inputs and references share one call
    for part in chunks(rows_count, per_chunk):
        rows = torch.arange(rows_count, device=activations.device)[part]
        chosen = activations[part].detach()
        both = torch.cat([chosen, torch.zeros_like(chosen)]).requires_grad_(True)
        rows_both = torch.cat([rows, rows])
        with torch.inference_mode(False), torch.enable_grad(), RescaleRule():
            values = evidence.values(both, rows_both, real=rows.numel())
            (multipliers,) = torch.autograd.grad(values[: rows.numel()].sum(), both)
        weights[part] = (multipliers[: rows.numel()] * chosen).sum(dim=(2, 3))
    return weights
