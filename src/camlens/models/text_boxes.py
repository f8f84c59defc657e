r"""Word boxes from a text detector's score map: what CRAFT and DBNet output becomes.

Both detectors output a per-pixel text score; words are its connected regions. One function does
the post-processing of both, in the manner of their reference code (EasyOCR's ``getDetBoxes`` and
PaddleOCR's ``DBPostProcess``), with axis-aligned boxes rather than rotated ones:

1. pixels are text where the score is at least ``low`` (CRAFT also joins characters where its
   affinity score is at least ``link_threshold``);
2. 8-connected regions of at least ``min_pixels`` pixels are kept when their strongest pixel
   reaches ``high`` (CRAFT's text threshold) and their mean score ``mean`` (DBNet's box threshold);
3. each region's bounding box grows by :math:`d = A \cdot r / L` on every side (DBNet's "unclip":
   area ``A`` and perimeter ``L`` of the box, ratio ``r``), then is scaled to the input's pixels.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.geometry import Box

__all__ = ["text_boxes"]


def text_boxes(score: torch.Tensor, *, low: float, high: float = 0.0, mean: float = 0.0,
               link: torch.Tensor | None = None, link_threshold: float = 0.4, min_pixels: int = 10,
               unclip: float = 0.0, scale: float = 1.0) -> list[Box]:
    """The word boxes ``(x0, y0, x1, y1)`` of a score map (h, w), in input pixels (``scale`` =
    input size / map size), sorted by their top, then left edge (see the module docstring)."""
    from scipy import ndimage

    if score.dim() != 2:
        raise ValueError(f"a text score map is (h, w); got shape {tuple(score.shape)}")
    values = score.detach().float().cpu().numpy()
    text = values >= low
    if link is not None:
        text |= link.detach().float().cpu().numpy() >= link_threshold
    labels, count = ndimage.label(text, structure=np.ones((3, 3), dtype=bool))
    height, width = values.shape
    boxes = []
    for index, where in enumerate(ndimage.find_objects(labels), start=1):
        region = labels[where] == index
        pixels = values[where][region]
        if region.sum() < min_pixels or pixels.max() < high or pixels.mean() < mean:
            continue
        y0, y1, x0, x1 = where[0].start, where[0].stop, where[1].start, where[1].stop
        grow = (x1 - x0) * (y1 - y0) * unclip / (2 * ((x1 - x0) + (y1 - y0)))
        box = (max(0.0, x0 - grow), max(0.0, y0 - grow), min(width, x1 + grow), min(height, y1 + grow))
        boxes.append(tuple(float(v * scale) for v in box))
    return sorted(boxes, key=lambda b: (b[1], b[0]))
