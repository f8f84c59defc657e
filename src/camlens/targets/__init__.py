"""What to explain: targets turn the model's output into one differentiable score per row.

Builds only on :mod:`camlens.engine`. A new target is a :class:`Target` subclass in the module of
its kind: ``__call__`` (output → :class:`TargetScores`) and ``rescore`` (the same quantity for rows
whose class, position and image are fixed, on the output of a perturbed input or activation).

Kinds: ``classification`` (a class, several, the top k), ``counterfactual``, ``regions``
(segmentation, heatmap regions), ``sequences`` (captions, CTC readings), ``detections`` (boxes),
``similarity`` (embeddings), ``callables`` (any function).
"""

from .base import Target, TargetScores
from .callables import CallableTarget
from .classification import Classes, ClassTarget, ScoreKind, TopK
from .counterfactual import Counterfactual
from .detections import BoxTarget, NoMatchingDetection
from .regions import BoxRegion, EmptyRegion, RegionScore, SegmentationRegion
from .resolve import as_target
from .sequences import CaptionTarget, CTCTarget
from .similarity import SimilarityTarget

__all__ = [
    "TargetScores", "Target", "ClassTarget", "Classes", "TopK", "Counterfactual", "SegmentationRegion",
    "RegionScore", "BoxRegion", "EmptyRegion", "CaptionTarget", "CTCTarget", "BoxTarget", "NoMatchingDetection", "SimilarityTarget",
    "CallableTarget", "as_target",
    "ScoreKind",
]
