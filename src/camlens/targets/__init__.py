"""What to explain: targets turn the model's output into one differentiable score per row.

Builds only on :mod:`camlens.engine`. A new target is a :class:`Target` subclass in the module of
its kind: ``__call__`` (output → :class:`TargetScores`) and ``rescore`` (the same quantity for rows
whose class and image are fixed, on the output of a perturbed input or activation).
"""

from .base import Target, TargetScores
from .callables import CallableTarget
from .classification import Classes, ClassTarget, ScoreKind, TopK
from .counterfactual import Counterfactual
from .regions import SegmentationRegion
from .resolve import as_target

__all__ = [
    "TargetScores", "Target", "ClassTarget", "Classes", "TopK", "Counterfactual", "SegmentationRegion",
    "CallableTarget", "as_target", "ScoreKind",
]
