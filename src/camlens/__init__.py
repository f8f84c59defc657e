"""camlens: class activation maps that are correct to the papers and fast.

Everything a user needs is here: :func:`explain` and its :class:`Explanation`, the targets, the
method registry, :func:`normalize`, reading photos, the model zoo and pictures. The subpackages
draw the architecture (see ``docs/architecture.md``): ``engine`` → ``targets`` → ``methods`` →
``explain`` → ``metrics`` → ``report`` / ``models`` → ``evaluate`` → ``cli``, with ``data`` and
the result type below them all.
"""

__version__ = "0.1.0"

from .data import Preprocessing, load_images, read_image, resolve_class
from .engine.inputs import Inputs
from .engine.layers import auto_layer, layer_output_shapes, resolve_layer
from .engine.tokens import TokenLayout
from .explain import explain
from .explanation import Explanation, normalize
from .methods import METHODS
from .models import LoadedModel, load, wrap
from .report import draw_box, grid, overlay, render_attribution
from .targets import (
    BoxTarget,
    CallableTarget,
    CaptionTarget,
    Classes,
    ClassTarget,
    Counterfactual,
    CTCTarget,
    RegionScore,
    SegmentationRegion,
    SimilarityTarget,
    Target,
    TopK,
)

__all__ = [
    "explain", "Explanation", "normalize", "METHODS", "auto_layer", "layer_output_shapes", "resolve_layer",
    "Target", "ClassTarget", "Classes", "TopK", "Counterfactual", "SegmentationRegion", "CallableTarget",
    "RegionScore", "CaptionTarget", "CTCTarget", "BoxTarget", "SimilarityTarget", "Inputs", "TokenLayout",
    "read_image", "load_images", "resolve_class", "Preprocessing", "load", "wrap", "LoadedModel",
    "overlay", "render_attribution", "draw_box", "grid",
]
