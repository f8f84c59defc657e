"""Boxes and masks, from the original photo's pixels to the model input's, through the
preprocessing's resize and center crop."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .preprocessing import Preprocessing

__all__ = ["Box", "boxes_in_input", "mask_in_input"]

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1), inclusive-exclusive pixel bounds


def boxes_in_input(boxes: Sequence[Box], size: tuple[int, int], preprocessing: Preprocessing) -> list[Box]:
    """Boxes in the original image's pixels (``size`` = (width, height)) → in the model input's
    pixels after ``preprocessing`` resizes and center-crops, clipped to the crop; boxes that fall
    entirely outside the crop are dropped."""
    x0, y0, x1, y1 = preprocessing.crop_box(size)
    scale_x, scale_y = preprocessing.crop / (x1 - x0), preprocessing.crop / (y1 - y0)
    result = []
    for bx0, by0, bx1, by1 in boxes:
        box = tuple(min(max(v, 0.0), float(preprocessing.crop)) for v in
                    ((bx0 - x0) * scale_x, (by0 - y0) * scale_y, (bx1 - x0) * scale_x, (by1 - y0) * scale_y))
        if box[2] > box[0] and box[3] > box[1]:
            result.append(box)
    return result


def mask_in_input(path: str | Path, preprocessing: Preprocessing, foreground: Collection[int] | None = None) -> torch.Tensor:
    """A PNG of class indices → a boolean mask in the model input's pixels (nearest-neighbour
    resize and the same center crop). ``foreground``: the indices that count as the object; by
    default every index except 0 (background) and 255 (VOC's border)."""
    values = np.array(preprocessing.resize_and_crop(Image.open(path), Image.NEAREST))
    if values.ndim == 3:
        values = values[..., 0]
    mask = np.isin(values, list(foreground)) if foreground is not None else (values != 0) & (values != 255)
    return torch.from_numpy(mask)
