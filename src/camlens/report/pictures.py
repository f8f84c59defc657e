"""Pictures of one map: an overlay on the photo, an input-resolution attribution, a box.

Everything returns PIL images, which Jupyter displays as they are. Colormaps come from matplotlib,
sampled once per picture into a lookup table.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..data.geometry import Box, map_in_photo
from ..data.images import fit_within
from ..data.stream import DISPLAY_MAX_SIDE
from ..explanation import normalize

__all__ = ["overlay", "colormap_table", "render_attribution", "draw_box", "SAVE_OPTIONS", "MEDIA_TYPES"]

# How pictures are saved (``image.save(target, **SAVE_OPTIONS[kind])``). Overlays are photographs:
# JPEG writes one in 0.5 ms (PNG: 16 ms at its fastest level, 76 ms at its default) at a tenth of
# the size. PNG is there for pictures that must be lossless.
SAVE_OPTIONS = {"jpg": {"format": "JPEG", "quality": 90}, "png": {"format": "PNG", "compress_level": 1}}
MEDIA_TYPES = {"jpg": "image/jpeg", "png": "image/png"}


def colormap_table(cmap: str = "jet") -> np.ndarray:
    """matplotlib's colormap ``cmap`` sampled at 256 levels: a (256, 3) uint8 lookup table, so
    that coloring a map is one indexing operation rather than a per-pixel call to matplotlib."""
    try:
        from matplotlib import colormaps
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("pictures need matplotlib: pip install matplotlib") from error
    if cmap not in colormaps:
        raise ValueError(f"unknown colormap {cmap!r}; matplotlib has e.g. jet, viridis, inferno, turbo")
    levels = colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3]
    return (levels * 255 + 0.5).astype(np.uint8)


def overlay(image: Image.Image, saliency: torch.Tensor, box: Box | None = None, cmap: str = "jet", alpha: float = 0.5,
            max_side: int | None = DISPLAY_MAX_SIDE) -> Image.Image:
    """Blend a map (h, w), min–max normalized and colored with matplotlib's ``cmap``, over
    ``image``: ``(1 − alpha) · photo + alpha · color(map)``. ``box`` (x0, y0, x1, y1) is the
    region of ``image`` the map covers (e.g. :meth:`Preprocessing.crop_box`; the whole image by
    default); outside it the photo is shown as is, and where it reaches past the photo (a padded
    input) that part of the map is not drawn.

    The picture has the image's resolution, scaled down so that its longest side is at most
    ``max_side`` pixels (``None``: the full resolution). The map is upsampled bilinearly in
    float32 and colored through a 256-level lookup table (:func:`colormap_table`)."""
    if saliency.dim() != 2:
        raise ValueError(f"overlay takes one map of shape (h, w), not {tuple(saliency.shape)}")
    image, scale = fit_within(image.convert("RGB"), max_side)
    covered = tuple(v * scale for v in box) if box is not None else (0, 0, image.width, image.height)
    photo = np.array(image)
    scaled = normalize(saliency.detach().float().cpu()[None])[0]
    resized, (x0, y0, x1, y1) = map_in_photo(scaled, covered, image.size)
    if x1 <= x0 or y1 <= y0:
        return Image.fromarray(photo)
    levels = (resized.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    colored = colormap_table(cmap)[levels].astype(np.float32)
    under = photo[y0:y1, x0:x1].astype(np.float32)
    photo[y0:y1, x0:x1] = np.clip((1 - alpha) * under + alpha * colored + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(photo)


def render_attribution(attribution: torch.Tensor, percentile: float = 99.5, size: tuple[int, int] | None = None,
                       box: Box | None = None) -> Image.Image:
    """An input-resolution attribution (C, H, W) such as Guided Grad-CAM as an RGB image: gray
    (0.5) is zero, brighter channels are positive evidence, darker negative. Values are scaled by
    the ``percentile`` of their magnitudes and clipped, so that a few extreme pixels do not leave
    the rest gray; the sign is kept.

    With ``size`` (width, height) the picture is that large, gray, with the attribution resized
    into ``box`` (the region of the photo the model saw, e.g. :meth:`Preprocessing.crop_box` in
    the picture's pixels): it then lines up with the photo and its overlays."""
    if attribution.dim() != 3:
        raise ValueError(f"render_attribution takes one (C, H, W) attribution, not {tuple(attribution.shape)}")
    values = attribution.detach().float().cpu()
    peak = torch.quantile(values.abs().flatten(), percentile / 100)
    if not peak > 0:
        peak = values.abs().max()
    scaled = 0.5 + 0.5 * values / peak if peak > 0 else torch.full_like(values, 0.5)
    if scaled.shape[0] == 1:
        scaled = scaled.expand(3, -1, -1)
    picture = Image.fromarray((scaled.permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))
    if size is None:
        return picture
    x0, y0, x1, y1 = (round(v) for v in (box or (0, 0, *size)))
    canvas = Image.new("RGB", size, (128, 128, 128))
    if x1 > x0 and y1 > y0:
        canvas.paste(picture.resize((x1 - x0, y1 - y0), Image.BILINEAR), (x0, y0))
    return canvas


def draw_box(image: Image.Image, box: Box, color: str = "lime", width: int = 3) -> Image.Image:
    """A copy of ``image`` with the rectangle ``box`` (x0, y0, x1, y1) drawn on it."""
    image = image.convert("RGB").copy()
    ImageDraw.Draw(image).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], outline=color, width=width)
    return image
