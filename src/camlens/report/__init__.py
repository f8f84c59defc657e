"""The edge where tensors become pictures: overlays, attributions, boxes, grids and figures.

Imports only torch, numpy, Pillow, matplotlib, :mod:`camlens.data` and the result type
(:mod:`camlens.explanation`); import-linter checks it. Everything returns PIL images.
"""

from .figures import diagnosis, plot_curves
from .pictures import colormap_table, draw_box, overlay, render_attribution
from .sheets import grid

__all__ = ["overlay", "colormap_table", "render_attribution", "draw_box", "grid", "diagnosis", "plot_curves"]
