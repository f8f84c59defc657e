"""From a map to a box: the Grad-CAM paper's weakly-supervised localization step."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["box_from_map"]


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
