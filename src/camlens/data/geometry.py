"""Boxes and masks, from the original photo's pixels to the model input's, through the
preprocessing's fit (center crop, resize or pad)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .preprocessing import Preprocessing

__all__ = ["Box", "boxes_in_input", "box_in_photo", "mask_in_input", "map_in_photo"]

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1), inclusive-exclusive pixel bounds


def boxes_in_input(boxes: Sequence[Box], size: tuple[int, int], preprocessing: Preprocessing) -> list[Box]:
    """Boxes in the original image's pixels (``size`` = (width, height)) → in the model input's
    pixels after ``preprocessing`` fits the photo into its square (:attr:`Preprocessing.fit`),
    clipped to the square; boxes that fall entirely outside it (cut off by a crop) are dropped."""
    x0, y0, x1, y1 = preprocessing.crop_box(size)
    height, width = preprocessing.size
    scale_x, scale_y = width / (x1 - x0), height / (y1 - y0)
    result = []
    for bx0, by0, bx1, by1 in boxes:
        box = ((bx0 - x0) * scale_x, (by0 - y0) * scale_y, (bx1 - x0) * scale_x, (by1 - y0) * scale_y)
        box = tuple(min(max(v, 0.0), float(limit)) for v, limit in zip(box, (width, height, width, height)))
        if box[2] > box[0] and box[3] > box[1]:
            result.append(box)
    return result


def box_in_photo(box: Box, covered: Box, map_size: tuple[int, int]) -> Box:
    """The inverse of :func:`boxes_in_input` for one box: ``box`` in the pixels of a map of
    ``map_size`` (h, w) that covers the region ``covered`` of the photo
    (:meth:`Preprocessing.crop_box`) → the photo's pixels."""
    x0, y0, x1, y1 = covered
    sx, sy = (x1 - x0) / map_size[1], (y1 - y0) / map_size[0]
    return x0 + box[0] * sx, y0 + box[1] * sy, x0 + box[2] * sx, y0 + box[3] * sy


def mask_in_input(path: str | Path, preprocessing: Preprocessing, foreground: Collection[int] | None = None) -> torch.Tensor:
    """A PNG of class indices → a boolean mask in the model input's pixels (nearest-neighbour
    resize and the same fit; padding is never foreground). ``foreground``: the indices that
    count as the object; by default every index except 0 (background) and 255 (VOC's border)."""
    with Image.open(path) as label:
        values = np.array(label)
    if values.ndim == 3:
        values = values[..., 0]
    mask = np.isin(values, list(foreground)) if foreground is not None else (values != 0) & (values != 255)
    fitted = preprocessing.fit_image(Image.fromarray(mask.astype(np.uint8) * 255), Image.NEAREST, fill=0)
    return torch.from_numpy(np.array(fitted) > 127)


def map_in_photo(saliency: torch.Tensor, box: Box, size: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """The inverse direction: a map (h, w) over the model's square → the part of it that lies on
    a photo of ``size`` (width, height), bilinearly resampled to the photo's pixels, and that
    part's region ``(x0, y0, x1, y1)`` in the photo (integers). ``box`` is where the square lies
    in the photo (:meth:`Preprocessing.crop_box`, in the same pixels as ``size``): inside it for
    a crop, past its edges for a pad, whose padded rows are cut off here. Outside the region the
    model saw nothing of the photo. The region is empty (and the map 0×0) when the box misses
    the photo."""
    width, height = size
    bx0, by0, bx1, by1 = (round(v) for v in box)
    x0, y0, x1, y1 = max(bx0, 0), max(by0, 0), min(bx1, width), min(by1, height)
    if x1 <= x0 or y1 <= y0 or bx1 <= bx0 or by1 <= by0:
        return saliency.new_zeros(0, 0), (x0, y0, x0, y0)
    resized = torch.nn.functional.interpolate(saliency[None, None], size=(by1 - by0, bx1 - bx0), mode="bilinear",
                                              align_corners=False)[0, 0]
    return resized[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0], (x0, y0, x1, y1)
