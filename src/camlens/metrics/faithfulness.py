r"""Faithfulness metrics: does the model's score follow what the map says matters?

All functions work on batches of tensors on the caller's device. ``model`` is any callable from
images (B, C, H, W) — already preprocessed — to logits (B, classes); ``score`` turns logits
into the per-image score of the explained class (softmax probability by default, as in the
LIFT-CAM and Grad-CAM++ papers; ``"logit"`` or, for multi-label models, ``"sigmoid"`` as options). Maps are (B, H, W) at the input's
resolution, non-negative; they are min–max normalized to [0, 1] here (a constant map becomes all
zero).

Masking happens in the model's input space: ``x ⊙ L`` multiplies the preprocessed image, so a
removed pixel takes the value 0 of the normalized input (the dataset's mean colour for
mean/std normalization), which is what the reference implementations of these metrics do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch.nn import functional as F

from ..engine.after import chunks
from ..explanation import normalize

__all__ = [
    "ScoreKind", "MaskKind", "SCORE_KINDS", "MASK_KINDS", "check_options", "class_scores", "masked_scores", "average_drop", "increase_in_confidence",
    "average_drop_in_deletion", "Curves", "deletion_insertion", "auc", "gaussian_blur", "occlusion_map",
    "rank_correlation", "spearman",
]

ScoreKind = Literal["probability", "logit", "sigmoid"]
MaskKind = Literal["soft", "top50"]
SCORE_KINDS: tuple[str, ...] = get_args(ScoreKind)
MASK_KINDS: tuple[str, ...] = get_args(MaskKind)
Model = Callable[[torch.Tensor], torch.Tensor]


def check_options(kind: str = "probability", mask: str = "soft", steps: int = 1) -> None:
    """Raise ``ValueError`` for a score kind, mask or step count these metrics do not know: the
    one check behind :func:`class_scores`, :func:`masked_scores`, :func:`deletion_insertion` and
    ``evaluation.Protocol`` (which runs it before any work starts)."""
    if kind not in SCORE_KINDS:
        raise ValueError(f"unknown score kind {kind!r}; choose {' or '.join(SCORE_KINDS)}")
    if mask not in MASK_KINDS:
        raise ValueError(f"unknown mask {mask!r}; choose {' or '.join(MASK_KINDS)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")


def class_scores(logits: torch.Tensor, classes: torch.Tensor, kind: ScoreKind = "probability") -> torch.Tensor:
    """The score of ``classes[i]`` in row i: softmax probability (default), the logit, or its
    sigmoid (a multi-label model's probability of that label alone)."""
    check_options(kind=kind)
    values = {"probability": lambda: logits.softmax(dim=1), "sigmoid": logits.sigmoid, "logit": lambda: logits}[kind]()
    return values.gather(1, classes.view(-1, 1).to(values.device)).view(-1)


def _scores(model: Model, images: torch.Tensor, classes: torch.Tensor, kind: ScoreKind, batch_size: int) -> torch.Tensor:
    with torch.inference_mode():
        parts = [class_scores(model(images[part]), classes[part], kind) for part in chunks(images.shape[0], batch_size)]
    return torch.cat(parts)


def masked_scores(model: Model, images: torch.Tensor, maps: torch.Tensor, classes: torch.Tensor, *,
                  kind: ScoreKind = "probability", mask: MaskKind = "soft",
                  batch_size: int = 32) -> dict[str, torch.Tensor]:
    r"""The scores the three masking metrics need, per image: ``Y`` on the image, ``O`` on the
    image kept where the map is high (:math:`x \odot L`), ``D`` on the image kept where it is low
    (:math:`x \odot (1 - L)`). ``mask="soft"`` (default) uses the normalized map :math:`L` as is;
    ``"top50"`` uses a binary mask of the map's top half of pixels (ties at the cut kept)."""
    check_options(kind=kind, mask=mask)
    saliency = normalize(maps)
    if mask == "top50":
        flat = saliency.flatten(1)
        cut = flat.topk((flat.shape[1] + 1) // 2, dim=1).values[:, -1].view(-1, 1, 1)
        saliency = (saliency >= cut).to(saliency.dtype)
    keep = saliency[:, None]
    batch = torch.cat([images, images * keep, images * (1 - keep)])
    values = _scores(model, batch, classes.repeat(3), kind, batch_size).view(3, -1)
    return {"Y": values[0], "O": values[1], "D": values[2]}


def average_drop(Y: torch.Tensor, O: torch.Tensor) -> torch.Tensor:
    r"""Per-image drop :math:`\max(0, Y - O) / Y` (the metric is its mean; lower is better)."""
    return (Y - O).clamp_min(0) / Y


def increase_in_confidence(Y: torch.Tensor, O: torch.Tensor) -> torch.Tensor:
    """Per-image indicator ``O > Y`` as 0/1 (the metric is its mean, a fraction; higher is better)."""
    return (O > Y).to(Y.dtype)


def average_drop_in_deletion(Y: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    r"""ADD, per image :math:`(Y - D) / Y`: removing what the map shows should hurt (higher is better)."""
    return (Y - D) / Y


def gaussian_blur(images: torch.Tensor, kernel_size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """RISE's insertion canvas: a Gaussian blur (kernel 11, σ 5 by default), separable, per
    channel, with reflected borders."""
    radius = kernel_size // 2
    offsets = torch.arange(kernel_size, dtype=images.dtype, device=images.device) - radius
    kernel = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    blurred = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="reflect"), horizontal, groups=channels)
    return F.conv2d(F.pad(blurred, (0, 0, radius, radius), mode="reflect"), vertical, groups=channels)


def auc(curve: torch.Tensor) -> torch.Tensor:
    """Area under curves (..., T + 1) sampled at equal steps of [0, 1] (trapezoid rule, as RISE)."""
    steps = curve.shape[-1] - 1
    return (curve.sum(dim=-1) - (curve[..., 0] + curve[..., -1]) / 2) / steps


@dataclass(frozen=True)
class Curves:
    """Deletion and insertion curves (B, steps + 1), and their areas (B,)."""

    deletion: torch.Tensor
    insertion: torch.Tensor

    @property
    def deletion_auc(self) -> torch.Tensor:
        return auc(self.deletion)

    @property
    def insertion_auc(self) -> torch.Tensor:
        return auc(self.insertion)


def _thresholds(saliency: torch.Tensor, steps: int) -> torch.Tensor:
    """Per image (B, steps + 1): the map value at or above which pixels are changed after step t,
    so that step t changes the ``round(t / steps · HW)`` most salient pixels (+inf at t = 0)."""
    ordered = saliency.flatten(1).sort(dim=1, descending=True).values
    pixels = ordered.shape[1]
    counts = torch.round(torch.arange(steps + 1, device=saliency.device) * pixels / steps).long()
    values = ordered[:, (counts - 1).clamp_min(0)]
    values[:, 0] = float("inf")
    return values


def deletion_insertion(model: Model, images: torch.Tensor, maps: torch.Tensor, classes: torch.Tensor, *,
                       steps: int = 32, kind: ScoreKind = "probability", baseline: torch.Tensor | float = 0.0,
                       canvas: torch.Tensor | None = None, batch_size: int = 32) -> Curves:
    r"""RISE's causal metrics (Petsiuk et al., BMVC 2018). Pixels are taken in the map's order,
    ``HW / steps`` per step: *deletion* replaces them with ``baseline`` (0 of the normalized input
    by default), *insertion* copies them from the image onto ``canvas`` (the image blurred by
    :func:`gaussian_blur` by default). Each curve holds the score after 0, 1, …, ``steps`` steps;
    its area (:func:`auc`) should be low for deletion and high for insertion.

    Pixels whose map values tie are changed together, at the step that first reaches them: a
    map cannot claim an order it does not have. A constant map therefore deletes everything at
    step 1, and its deletion curve is the image's score followed by the baseline's.

    Memory: the modified images are built per chunk of ``batch_size`` from the thresholds, never
    all at once.
    """
    check_options(kind=kind, steps=steps)
    canvas = gaussian_blur(images) if canvas is None else canvas
    baseline = torch.as_tensor(baseline, dtype=images.dtype, device=images.device).expand_as(images)
    thresholds = _thresholds(maps, steps)                                     # (B, T + 1)
    count = images.shape[0] * (steps + 1)
    image_of = torch.arange(images.shape[0], device=images.device).repeat_interleave(steps + 1)
    curves = []
    for start, end in ((images, baseline), (canvas, images)):   # deletion: image → baseline; insertion: canvas → image
        values = images.new_empty(count)
        with torch.inference_mode():
            for part in chunks(count, batch_size):
                which = image_of[part]
                changed = (maps[which] >= thresholds.view(-1)[part, None, None])[:, None]
                batch = torch.where(changed, end[which], start[which])
                values[part] = class_scores(model(batch), classes[which], kind)
        curves.append(values.view(-1, steps + 1))
    return Curves(*curves)


def occlusion_map(model: Model, images: torch.Tensor, classes: torch.Tensor, *, patch: int = 32, stride: int = 16,
                  kind: ScoreKind = "logit", baseline: float = 0.0, batch_size: int = 32) -> torch.Tensor:
    """Zeiler & Fergus occlusion, as the Grad-CAM paper's faithfulness reference: the drop of the
    score when a ``patch``×``patch`` square (stride ``stride``) is set to ``baseline``, on the
    grid of patch positions (B, rows, cols)."""
    height, width = images.shape[-2:]
    ys = list(range(0, max(height - patch, 0) + 1, stride))
    xs = list(range(0, max(width - patch, 0) + 1, stride))
    grid = torch.zeros(len(ys) * len(xs), height, width, dtype=torch.bool, device=images.device)
    for index, (y, x) in enumerate((y, x) for y in ys for x in xs):
        grid[index, y:y + patch, x:x + patch] = True
    base = _scores(model, images, classes, kind, batch_size)
    drops = images.new_empty(images.shape[0], grid.shape[0])
    for image in range(images.shape[0]):
        occluded = torch.where(grid[:, None], torch.full_like(images[image], baseline), images[image])
        scores = _scores(model, occluded, classes[image].expand(grid.shape[0]), kind, batch_size)
        drops[image] = base[image] - scores
    return drops.view(images.shape[0], len(ys), len(xs))


def rank_correlation(maps: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation per image between maps (B, H, W) and a reference map (B, h, w)
    (e.g. :func:`occlusion_map`); the maps are first averaged over the reference's cells."""
    pooled = F.adaptive_avg_pool2d(maps[:, None], reference.shape[-2:])[:, 0].flatten(1)
    return spearman(pooled, reference.flatten(1))


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Average ranks along the last dimension (ties share their mean rank), as Spearman needs."""
    from scipy.stats import rankdata

    return torch.from_numpy(rankdata(values.detach().double().cpu().numpy(), axis=-1)).to(values.device)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of a and b along their last dimension."""
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(dim=-1, keepdim=True), rb - rb.mean(dim=-1, keepdim=True)
    return ((ra * rb).sum(-1) / (ra.norm(dim=-1) * rb.norm(dim=-1)).clamp_min(1e-12)).float()
