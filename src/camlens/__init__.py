"""camlens: class activation maps that are correct to the papers and fast."""

from .explain import explain
from .explanation import Explanation, normalize
from .layers import auto_layer, layer_output_shapes, resolve_layer
from .methods import METHODS
from .targets import CallableTarget, Classes, ClassTarget, Counterfactual, SegmentationRegion, Target, TopK

__all__ = [
    "explain", "Explanation", "normalize", "METHODS", "auto_layer", "layer_output_shapes", "resolve_layer",
    "Target", "ClassTarget", "Classes", "TopK", "Counterfactual", "SegmentationRegion", "CallableTarget",
]
__version__ = "0.1.0"
