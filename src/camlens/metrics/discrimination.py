r"""Class-discriminativeness without people: does an explanation reveal *which* class it explains?

The Grad-CAM paper showed people the Guided Grad-CAM (or Guided Backpropagation) of one of the two
classes in an image and asked which class it showed. Here the model is asked instead: keep the
image's pixels where the map of class :math:`c` is highest, replace the rest with a canvas, and see
which of the two classes the model now prefers,

.. math:: r = \mathbb 1\big[z_c(\tilde x) > z_{c'}(\tilde x)\big] + \tfrac12\,\mathbb 1\big[z_c(\tilde x) = z_{c'}(\tilde x)\big],
   \qquad \tilde x = m_p \odot x + (1 - m_p) \odot \bar x,

with :math:`m_p` the top fraction :math:`p` of the map's pixels among those it gives positive
evidence (ties at the cut kept). Pixels a map gives no evidence are never kept: a Grad-CAM map
zero on 96 % of the image keeps its 4 % at p = 20 %, not the whole image, and an all-zero map
keeps nothing (the canvas alone, the same for both classes). :math:`\bar x` the canvas (the image blurred, or the mean colour:
0 of the normalized input) and :math:`z` the logits (for a softmax model, comparing logits is
comparing probabilities). Explaining each of the two classes in turn, chance is 0.5 whatever the
model prefers.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Literal, get_args

import torch
from torch import nn

from ..engine.after import chunks
from ..engine.modelstate import evaluation_mode
from .faithfulness import gaussian_blur

__all__ = ["FillKind", "FILLS", "keep_top", "revealed"]

FillKind = Literal["blur", "mean"]
FILLS: tuple[str, ...] = get_args(FillKind)


def keep_top(images: torch.Tensor, maps: torch.Tensor, fraction: float, fill: FillKind = "blur") -> torch.Tensor:
    """``images`` (B, C, H, W) kept where ``maps`` (B, H, W) hold their top ``fraction`` of pixels
    and are positive (ties at the cut kept), the rest from the canvas ``fill``: the image blurred (RISE's blur,
    σ = 5 px) or the mean colour (0 of the normalized input)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"the fraction of pixels kept must be in (0, 1], not {fraction}")
    if fill not in FILLS:
        raise ValueError(f"unknown fill {fill!r}; choose {' or '.join(FILLS)}")
    flat = maps.flatten(1)
    count = max(1, round(fraction * flat.shape[1]))
    cut = flat.topk(count, dim=1).values[:, -1].view(-1, 1, 1)
    keep = ((maps >= cut) & (maps > 0))[:, None]
    canvas = gaussian_blur(images) if fill == "blur" else torch.zeros_like(images)
    return torch.where(keep, images, canvas)


def revealed(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, maps: torch.Tensor,
             explained: torch.Tensor, other: torch.Tensor, fraction: float, fill: FillKind = "blur",
             batch_size: int = 32) -> torch.Tensor:
    """Per row, :math:`r` of the module docstring (1, ½ or 0): whether the model, shown the image
    kept where the map of class ``explained`` is highest, prefers that class over ``other``. A
    module is run in eval mode and left in its own."""
    kept = keep_top(images, maps, fraction, fill)
    with evaluation_mode(model) if isinstance(model, nn.Module) else nullcontext(), torch.inference_mode():
        logits = torch.cat([model(kept[part]) for part in chunks(kept.shape[0], batch_size)])
    mine = logits.gather(1, explained.view(-1, 1).to(logits.device))[:, 0]
    theirs = logits.gather(1, other.view(-1, 1).to(logits.device))[:, 0]
    return (mine > theirs).to(logits.dtype) + 0.5 * (mine == theirs).to(logits.dtype)
