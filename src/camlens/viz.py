"""Pictures: the edge where tensors become images. Colormaps come from matplotlib.

Everything returns PIL images, which Jupyter displays as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from .explanation import normalize
from .localization import Box

__all__ = ["overlay", "render_attribution", "draw_box", "grid", "diagnosis"]


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


def grid(panels: Sequence[Sequence[Image.Image | None]], titles: Sequence[Sequence[str]] | None = None,
         row_labels: Sequence[str] | None = None, panel_inches: float = 2.6) -> Image.Image:
    """Panels arranged in rows (e.g. one row per class, one column per method) with a title over
    each panel and an optional label per row; a ``None`` panel is left blank. Rendered with
    matplotlib at 100 dpi."""
    # A figure with its own Agg canvas: no pyplot, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, cols = len(panels), max(len(row) for row in panels)
    figure = Figure(figsize=(panel_inches * cols, (panel_inches + 0.35) * rows), dpi=100)
    axes = figure.subplots(rows, cols, squeeze=False)
    for r, row in enumerate(panels):
        for c in range(cols):
            axis = axes[r][c]
            axis.axis("off")
            if c < len(row) and row[c] is not None:
                axis.imshow(row[c])
                if titles is not None:
                    axis.set_title(titles[r][c], fontsize=9)
        if row_labels is not None:
            axes[r][0].text(-0.04, 0.5, row_labels[r], transform=axes[r][0].transAxes, rotation=90,
                            va="center", ha="right", fontsize=9)
    canvas = FigureCanvasAgg(figure)
    figure.tight_layout()
    canvas.draw()
    buffer = np.asarray(canvas.buffer_rgba())
    return Image.fromarray(buffer[..., :3].copy())


def diagnosis(image: Image.Image, predicted: dict[str, torch.Tensor], true: dict[str, torch.Tensor],
              predicted_name: str, true_name: str, box: Box | None = None) -> Image.Image:
    """The Grad-CAM paper's failure diagnosis: the photo, then one column per method with the map
    for the predicted class above the map for the true class. ``predicted`` and ``true`` map
    method names to maps (h, w); ``box`` is the region of ``image`` the maps cover."""
    methods = list(predicted)
    panels = [[image] + [overlay(image, predicted[m], box) for m in methods],
              [None] + [overlay(image, true[m], box) for m in methods]]
    titles = [["photo", *methods], ["", *methods]]
    return grid(panels, titles, row_labels=[f"predicted: {predicted_name}", f"true: {true_name}"])
