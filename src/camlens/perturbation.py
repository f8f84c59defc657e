r"""Methods that perturb the layer's activations or the input: Ablation-CAM, Score-CAM, LIFT-CAM.

Each returns channel weights (N, K); the map is then :math:`\mathrm{ReLU}(\sum_k w_k A^k)` as for
the gradient methods. Work is done in chunks (``evidence.batch_size`` activations for the network
after the layer, ``evidence.image_batch_size`` images for the full model), so peak memory is
bounded by the chunk size, never by the number of channels.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.nn import functional as F

from .after import chunks
from .deeplift import RescaleRule
from .evidence import Evidence

__all__ = ["ablation_weights", "scorecam_weights", "liftcam_weights", "channel_masks"]


def ablation_weights(evidence: Evidence) -> torch.Tensor:
    r"""Ablation-CAM (Desai & Ramaswamy, WACV 2020): the relative drop of the score when map k is
    set to zero, evaluated on the network after the layer only,

    .. math:: w_k = \frac{y^c - y^c_{A^k = 0}}{|y^c|}.

    The paper divides by :math:`y^c`; for :math:`y^c < 0` that would silently flip every weight's
    sign, so camlens divides by :math:`|y^c|` (a drop in score always counts as evidence *for*
    the class), and by 1 where :math:`y^c = 0`. A map that is already all zero cannot change the
    score when zeroed: its weight is exactly 0 and it is not evaluated. Where the network after
    the layer begins with channel-wise operations and a linear layer (VGG, ResNet, MobileNet,
    EfficientNet heads), the K ablations share one pass over that layer (:mod:`camlens.channelwise`).
    """
    activations = evidence.activations
    scores = evidence.scores.detach()
    ablated_scores = scores[:, None].repeat(1, activations.shape[1])  # all-zero maps keep the score
    rows, ablated = (activations.flatten(2) != 0).any(dim=2).nonzero(as_tuple=True)
    with torch.inference_mode():
        ablated_scores[rows, ablated] = evidence.values_zeroing(rows, ablated)
    scale = torch.where(scores == 0, torch.ones_like(scores), scores.abs())
    return (scores[:, None] - ablated_scores) / scale[:, None]


def channel_masks(activations: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Score-CAM's masks for one image's channels (K, h, w): each channel upsampled bilinearly to
    ``size`` and min–max normalized to [0, 1]; and which channels are constant (no mask)."""
    upsampled = F.interpolate(activations[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    low = upsampled.amin(dim=(1, 2), keepdim=True)
    span = upsampled.amax(dim=(1, 2), keepdim=True) - low
    constant = span.view(-1) == 0
    return (upsampled - low) / torch.where(span > 0, span, 1), constant


ScoreCamVariant = Literal["official", "baseline", "softmax"]


def _masked_probabilities(evidence: Evidence, row: int, channels: torch.Tensor) -> torch.Tensor:
    """Softmax probability of the row's class on ``image ⊙ H^k`` for the given channels (chunked)."""
    image = evidence.images[evidence.image_index[row]]
    size = tuple(image.shape[-2:])
    rows = torch.full((1,), row, device=image.device)
    result = image.new_empty(channels.numel())
    for part in chunks(channels.numel(), evidence.image_batch_size):
        masks, _ = channel_masks(evidence.activations[row, channels[part]], size)
        # channels-last input: oneDNN's convolutions run markedly faster on CPU, the model is untouched
        logits = evidence.full_model((image[None] * masks[:, None]).contiguous(memory_format=torch.channels_last))
        result[part] = logits.softmax(dim=1).gather(1, evidence.classes[rows].expand(masks.shape[0])[:, None]).view(-1)
    return result


def scorecam_weights(evidence: Evidence, variant: ScoreCamVariant = "official", top: int | None = None,
                     fill_samples: int = 8, seed: int = 0) -> torch.Tensor:
    r"""Score-CAM (Wang et al., CVPR-W 2020): the softmax probability of the class on the image
    masked by each channel's normalized map :math:`H^k`,

    .. math:: w_k = p^c(X \odot H^k),\quad H^k = \frac{\mathrm{up}(A^k) - \min}{\max - \min}.

    This is the official code's formulation (``variant="official"``). ``"baseline"`` subtracts the
    probability of the fully masked image (the paper's :math:`f(X \circ H^k) - f(X_b)` with
    :math:`X_b = 0`); ``"softmax"`` applies a softmax over the channels' scores (the paper's
    normalization). Constant channels have no mask and get weight 0.

    ``top`` (fast Score-CAM): evaluate only the ``top`` channels with the largest first-order
    contribution :math:`\sum_{ij} g^k_{ij} A^k_{ij}` exactly; every other non-constant channel gets
    the mean weight of ``fill_samples`` of them drawn at random (seeded). Needs gradients.
    """
    if variant not in ("official", "baseline", "softmax"):
        raise ValueError(f"unknown Score-CAM variant {variant!r}; choose official, baseline or softmax")
    activations = evidence.activations
    rows_count, channels = activations.shape[:2]
    weights = activations.new_zeros(rows_count, channels)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with torch.inference_mode():
        for row in range(rows_count):
            spans = activations[row].amax(dim=(1, 2)) - activations[row].amin(dim=(1, 2))
            varying = (spans > 0).nonzero().view(-1)
            if top is not None and top < varying.numel():
                if evidence.gradients is None:
                    raise ValueError("fast Score-CAM ranks channels by gradients; they were not computed")
                contribution = (evidence.gradients[row] * activations[row]).sum(dim=(1, 2))[varying]
                order = contribution.argsort(descending=True)
                chosen, rest = varying[order[:top]], varying[order[top:]]
                sample = rest[torch.randperm(rest.numel(), generator=generator)[:fill_samples].to(rest.device)]
                values = _masked_probabilities(evidence, row, torch.cat([chosen, sample]))
                weights[row, rest] = values[top:].mean()
                weights[row, chosen] = values[:top]
            else:
                weights[row, varying] = _masked_probabilities(evidence, row, varying)
            if variant == "baseline":
                blank = evidence.images[evidence.image_index[row]][None] * 0
                classes = evidence.classes[row:row + 1]
                weights[row, varying] -= evidence.full_model(blank).softmax(dim=1).gather(1, classes[:, None]).view(-1)
            elif variant == "softmax":
                weights[row, varying] = weights[row, varying].softmax(dim=0)
    return weights


def liftcam_weights(evidence: Evidence) -> torch.Tensor:
    r"""LIFT-CAM (Jung & Oh, ICCV 2021): each map's contribution by DeepLIFT (Rescale rule, zero
    reference) through the network after the layer,

    .. math:: w_k = \sum_{ij} m^k_{ij} (A^k_{ij} - 0),

    an approximation of the Shapley value of map k in the game "keep these maps, zero the
    others". Summation-to-delta holds: :math:`\sum_k w_k = y^c(A) - y^c(0)` for scores linear in
    the model output (logits; a softmax score is differentiated as is). See :mod:`camlens.deeplift`.
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
