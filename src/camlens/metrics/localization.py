"""Localization metrics: from a map to a box (the Grad-CAM paper's weakly-supervised localization
step), IoU, the pointing game and its energy-based variant, and IoU with a segmentation mask."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..data.geometry import Box
from ..targets.detections import pairwise_iou
from .faithfulness import spearman

__all__ = ["box_from_map", "box_iou", "best_iou", "boxes_mask", "pointing_hit", "energy_in", "box_shares",
           "reading_order", "mask_iou", "localization_errors"]

def box_from_map(saliency: torch.Tensor, threshold: float = 0.15, largest_component: bool = True) -> tuple[int, int, int, int]:
    """The box ``(x0, y0, x1, y1)`` (inclusive-exclusive pixel bounds) around the region where the
    map (h, w) is at least ``threshold`` × its maximum (15% in Selvaraju et al.), restricted to
    the largest 8-connected component by default (all components otherwise). Connected components
    come from ``scipy.ndimage.label``. A map without any positive value gives the whole image."""
    from scipy import ndimage

    values = saliency.detach().float().cpu().numpy()
    height, width = values.shape
    peak = values.max()
    if not peak > 0:
        return 0, 0, width, height
    mask = values >= threshold * peak
    if largest_component:
        labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
        if count > 1:
            sizes = np.bincount(labels.ravel())[1:]
            mask = labels == (1 + int(np.argmax(sizes)))
    rows, cols = np.nonzero(mask)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes ``(x0, y0, x1, y1)`` (0 when the union is empty)."""
    return best_iou(a, [b])


def best_iou(box: Box, truths: Sequence[Box]) -> float:
    """The largest IoU of ``box`` with any of the ground-truth boxes (0 when there are none);
    computed by :func:`camlens.targets.detections.pairwise_iou`, in float64."""
    if not truths:
        return 0.0
    as_tensor = lambda boxes: torch.tensor([list(b) for b in boxes], dtype=torch.float64)  # noqa: E731
    return float(pairwise_iou(as_tensor([box]), as_tensor(truths)).max())


def boxes_mask(boxes: Sequence[Box], size: tuple[int, int]) -> torch.Tensor:
    """The union of boxes as a boolean mask of ``size`` = (height, width); box bounds are
    continuous coordinates, a pixel is inside when its centre is."""
    height, width = size
    ys = torch.arange(height, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(width, dtype=torch.float32)[None, :] + 0.5
    mask = torch.zeros(height, width, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes:
        mask |= (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    return mask


def pointing_hit(saliency: torch.Tensor, region: torch.Tensor, tolerance: float = 15) -> bool:
    """The pointing game (Zhang et al., used by Selvaraju et al.): a hit when the map's maximum
    lies within ``tolerance`` pixels (15 by default) of the region (a boolean mask, the union of
    the class's boxes or its segmentation). Ties for the maximum: the first in row-major order."""
    from scipy import ndimage

    region_np = region.detach().cpu().numpy().astype(bool)
    if not region_np.any():
        return False
    peak = int(saliency.detach().flatten().argmax())
    y, x = divmod(peak, saliency.shape[-1])
    distance = ndimage.distance_transform_edt(~region_np)  # 0 inside, pixels to the nearest region pixel outside
    return bool(distance[y, x] <= tolerance)


def energy_in(saliency: torch.Tensor, region: torch.Tensor) -> float:
    r"""The energy-based pointing game (Wang et al., Score-CAM): :math:`\sum_{ij \in R} L_{ij} / \sum_{ij} L_{ij}`
    for a non-negative map ``L``; 0 for an all-zero map."""
    total = float(saliency.sum())
    return float(saliency[region.to(saliency.device)].sum()) / total if total > 0 else 0.0


def box_shares(saliency: torch.Tensor, boxes: Sequence[Box], index: int) -> tuple[float, float, bool]:
    """How specific the map (H, W) of one box among several is — one word among the words a
    detector found: the share of its energy inside box ``index`` (:func:`energy_in`), the share
    inside the other boxes but outside that one, and whether its maximum lies inside that box."""
    own = boxes_mask([boxes[index]], tuple(saliency.shape[-2:])).to(saliency.device)
    others = boxes_mask([box for k, box in enumerate(boxes) if k != index], tuple(saliency.shape[-2:]))
    peak = int(saliency.detach().flatten().argmax())
    return energy_in(saliency, own), energy_in(saliency, others.to(saliency.device) & ~own), bool(own.flatten()[peak])


def reading_order(maps: torch.Tensor) -> float:
    r"""Whether the maps (N, h, w) of a sequence's elements — one per character a reader read, in
    reading order — move from left to right: Spearman's correlation between each element's index
    ``n`` and the column of its map's maximum, :math:`j_n = \arg\max_j \max_i L^n_{ij}` (ties: the
    first in row-major order). 1 when every peak lies right of the one before; NaN for fewer than
    two maps."""
    if maps.dim() != 3:
        raise ValueError(f"reading_order takes the maps (N, h, w) of one sequence, not {tuple(maps.shape)}")
    if maps.shape[0] < 2:
        return float("nan")
    columns = (maps.detach().flatten(1).argmax(dim=1) % maps.shape[-1]).double()
    return float(spearman(columns, torch.arange(len(columns), dtype=torch.float64, device=columns.device)))


def mask_iou(saliency: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5) -> float:
    """IoU of the map thresholded at ``threshold`` × its maximum (0.5 by default: a seed for
    weakly supervised segmentation) with a boolean segmentation mask of the same size."""
    peak = float(saliency.max())
    predicted = saliency >= threshold * peak if peak > 0 else torch.zeros_like(mask, dtype=torch.bool)
    mask = mask.to(predicted.device)
    union = int((predicted | mask).sum())
    return int((predicted & mask).sum()) / union if union else 0.0


def localization_errors(classes: Sequence[int], boxes: Sequence[Box], label: int, truths: Sequence[Box],
                        iou: float = 0.5) -> tuple[float, float]:
    """Weakly-supervised localization errors (ILSVRC protocol, as in Selvaraju et al.): given the
    top-k predicted ``classes`` (best first) and the box extracted from each one's map, a
    prediction is correct when its class is the ``label`` and its box overlaps one of the
    label's ground-truth boxes with IoU ≥ ``iou``. Returns (top-1 error, top-k error), each 0 or 1."""
    correct = [cls == label and best_iou(box, truths) >= iou for cls, box in zip(classes, boxes)]
    return float(not correct[0]), float(not any(correct))
