r"""Score-CAM (Wang et al., CVPR-W 2020): the class probability on the image masked by each map.

Work is done in chunks of ``evidence.image_batch_size`` images for the full model, so peak memory
is bounded by the chunk size, never by the number of channels.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.nn import functional as F

from ..engine.after import chunks
from .evidence import Evidence

__all__ = ["scorecam_weights", "channel_masks", "ScoreCamVariant"]


def channel_masks(activations: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Score-CAM's masks for one image's channels (K, h, w): each channel upsampled bilinearly to
    ``size`` and min–max normalized to [0, 1]; and which channels are constant (no mask)."""
    upsampled = F.interpolate(activations[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    low = upsampled.amin(dim=(1, 2), keepdim=True)
    span = upsampled.amax(dim=(1, 2), keepdim=True) - low
    constant = span.view(-1) == 0
    return (upsampled - low) / torch.where(span > 0, span, 1), constant


ScoreCamVariant = Literal["official", "baseline", "softmax"]


def _masked_confidence(evidence: Evidence, row: int, channels: torch.Tensor) -> torch.Tensor:
    """The row's confidence on ``image ⊙ H^k`` for the given channels (chunked): the softmax
    probability of its class for class targets (see :meth:`Target.confidence`)."""
    image = evidence.images[evidence.image_index[row]]
    size = tuple(image.shape[-2:])
    result = image.new_empty(channels.numel())
    with evidence.progress_bar(channels.numel(), f"Score-CAM, row {row}: masked images") as bar:
        for part in chunks(channels.numel(), evidence.image_batch_size):
            masks, _ = channel_masks(evidence.activations[row, channels[part]], size)
            rows = torch.full((masks.shape[0],), row, device=image.device)
            # channels-last input: oneDNN's convolutions run markedly faster on CPU, the model is untouched
            masked = (image[None] * masks[:, None]).contiguous(memory_format=torch.channels_last)
            result[part] = evidence.image_confidence(masked, rows)
            bar.update(masks.shape[0])
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

    For targets that are not classes (a caption's log-probability, a box's score, a similarity),
    :math:`p^c` is the target's own score on the masked image (:meth:`Target.confidence`): the
    quantity being explained, measured on what each mask keeps. The image is masked; a model's
    other inputs (a question, a caption) are passed unchanged.

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
                values = _masked_confidence(evidence, row, torch.cat([chosen, sample]))
                weights[row, rest] = values[top:].mean()
                weights[row, chosen] = values[:top]
            else:
                weights[row, varying] = _masked_confidence(evidence, row, varying)
            if variant == "baseline":
                blank = evidence.images[evidence.image_index[row]][None] * 0
                rows = torch.full((1,), row, device=blank.device)
                weights[row, varying] -= evidence.image_confidence(blank, rows)
            elif variant == "softmax":
                weights[row, varying] = weights[row, varying].softmax(dim=0)
    return weights
