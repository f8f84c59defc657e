"""Scores of explanations, batched on tensors; each metric's direction is declared in :data:`METRICS`.

- :mod:`~camlens.metrics.faithfulness`: Average Drop, Increase in Confidence, ADD, deletion and
  insertion (RISE), rank correlation with occlusion;
- :mod:`~camlens.metrics.axioms`: XGrad-CAM's conservation and sensitivity, LIFT-CAM's distance
  to Shapley values;
- :mod:`~camlens.metrics.localization`: boxes from maps, IoU, the pointing game and its
  energy-based variant, mask IoU;
- :mod:`~camlens.metrics.discrimination`: whether a map reveals which of two classes it explains.
"""

from .registry import GROUPS, METRICS, Metric

__all__ = ["Metric", "METRICS", "GROUPS"]
