"""The edge where tensors become pictures: overlays, attributions, boxes, grids and figures.

Imports only torch, numpy, Pillow, matplotlib, :mod:`camlens.data` and the result type
(:mod:`camlens.explanation`); import-linter checks it. Everything returns PIL images.
"""

from .figures import diagnosis, grid, plot_curves
from .pictures import draw_box, overlay, render_attribution

__all__ = ["overlay", "render_attribution", "draw_box", "grid", "diagnosis", "plot_curves"]
