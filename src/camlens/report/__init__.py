"""The edge where tensors become pictures: overlays, attributions, boxes, grids and figures, and
the HTML report of a run (:mod:`~camlens.report.html`).

Imports only torch, numpy, Pillow, matplotlib, Jinja2, :mod:`camlens.data` and the result type
(:mod:`camlens.explanation`); import-linter checks it. Pictures are PIL images.
"""

from .figures import diagnosis, plot_curves
from .html import evaluate_report, explain_report
from .pictures import MEDIA_TYPES, SAVE_OPTIONS, colormap_table, draw_box, overlay, render_attribution
from .sheets import grid

__all__ = ["overlay", "colormap_table", "render_attribution", "draw_box", "grid", "diagnosis", "plot_curves",
           "explain_report", "evaluate_report", "SAVE_OPTIONS", "MEDIA_TYPES"]
