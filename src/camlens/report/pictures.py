"""Pictures of one map: an overlay on the photo, an input-resolution attribution, a box.

Everything returns PIL images, which Jupyter displays as they are. Colormaps come from matplotlib.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..data.geometry import Box
from ..explanation import normalize

__all__ = ["overlay", "render_attribution", "draw_box"]


def _colormaps():
    try:
        from matplotlib import colormaps
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("pictures need matplotlib: pip install matplotlib") from error
    return colormaps


def overlay(image: Image.Image, saliency: torch.Tensor, box: Box | None = None, cmap: str = "jet", alpha: float = 0.5) -> Image.Image:
    """Blend a map (h, w), min–max normalized and colored with matplotlib's ``cmap``, over
    ``image`` at the image's own resolution. ``box`` (x0, y0, x1, y1) is the region of the image
    the map covers (e.g. :meth:`Preprocessing.crop_box`; the whole image by default); outside it
    the photo is shown as is."""
    if saliency.dim() != 2:
        raise ValueError(f"overlay takes one map of shape (h, w), not {tuple(saliency.shape)}")
    image = image.convert("RGB")
    x0, y0, x1, y1 = (round(v) for v in (box or (0, 0, image.width, image.height)))
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, image.width), min(y1, image.height)
    scaled = normalize(saliency.detach().float().cpu()[None])
    resized = torch.nn.functional.interpolate(scaled[None], size=(y1 - y0, x1 - x0), mode="bilinear", align_corners=False)[0, 0]
    colored = _colormaps()[cmap](resized.clamp(0, 1).numpy())[..., :3]
    photo = np.asarray(image, dtype=np.float64) / 255
    blended = photo.copy()
    blended[y0:y1, x0:x1] = (1 - alpha) * photo[y0:y1, x0:x1] + alpha * colored
    return Image.fromarray(np.clip(blended * 255 + 0.5, 0, 255).astype(np.uint8))


def render_attribution(attribution: torch.Tensor, percentile: float = 99.5) -> Image.Image:
    """An input-resolution attribution (C, H, W) such as Guided Grad-CAM as an RGB image: gray
    (0.5) is zero, brighter channels are positive evidence, darker negative. Values are scaled by
    the ``percentile`` of their magnitudes and clipped, so that a few extreme pixels do not leave
    the rest gray; the sign is kept."""
    if attribution.dim() != 3:
        raise ValueError(f"render_attribution takes one (C, H, W) attribution, not {tuple(attribution.shape)}")
    values = attribution.detach().float().cpu()
    peak = torch.quantile(values.abs().flatten(), percentile / 100)
    if not peak > 0:
        peak = values.abs().max()
    scaled = 0.5 + 0.5 * values / peak if peak > 0 else torch.full_like(values, 0.5)
    if scaled.shape[0] == 1:
        scaled = scaled.expand(3, -1, -1)
    return Image.fromarray((scaled.permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))


def draw_box(image: Image.Image, box: Box, color: str = "lime", width: int = 3) -> Image.Image:
    """A copy of ``image`` with the rectangle ``box`` (x0, y0, x1, y1) drawn on it."""
    image = image.convert("RGB").copy()
    ImageDraw.Draw(image).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], outline=color, width=width)
    return image
