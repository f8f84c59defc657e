"""Figures: the Grad-CAM paper's failure diagnosis (a sheet of overlays), and the mean deletion
and insertion curves, plotted with matplotlib.

A plot gets its own Agg canvas: no pyplot, no global backend switch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from ..data.geometry import Box
from .pictures import overlay
from .sheets import grid

__all__ = ["diagnosis", "plot_curves"]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _to_image(figure) -> Image.Image:
    """Lay out and render a figure on its own Agg canvas, as an RGB image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    figure.tight_layout()
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy())


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


_CURVE_AXES = {"deletion": "fraction of pixels removed", "insertion": "fraction of pixels inserted"}


def plot_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], areas: Mapping[str, Mapping[str, float]],
                ylabel: str = "probability of the class") -> Image.Image:
    """Deletion and insertion curves side by side (RISE, Petsiuk et al. 2018): ``curves[method]``
    maps ``"deletion"`` and ``"insertion"`` to the class score after each step, taken at evenly
    spaced fractions of the pixels; ``areas[method][kind]`` (the AUC) is shown in the legend."""
    figure = _figure(10, 4)
    for index, kind in enumerate(_CURVE_AXES):
        axes = figure.add_subplot(1, 2, index + 1)
        for method, by_kind in curves.items():
            values = by_kind[kind]
            xs = [i / (len(values) - 1) for i in range(len(values))]
            axes.plot(xs, values, label=f"{method} ({areas[method][kind]:.3f})")
        axes.set_title(f"mean {kind} curve (AUC)")
        axes.set_xlabel(_CURVE_AXES[kind])
        axes.set_ylabel(ylabel)
        axes.legend(fontsize=7)
    return _to_image(figure)
