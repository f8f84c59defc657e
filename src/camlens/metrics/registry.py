"""Every metric's name, group, direction and definition: what lets tables sort, mark the best and
label each column without special cases (Quantus declares its metrics' directions the same way)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Metric", "METRICS", "GROUPS"]


@dataclass(frozen=True)
class Metric:
    """A metric as it appears in results: its ``group`` (what ``camlens evaluate --metrics`` selects),
    whether a higher value is better, and its definition in one line."""

    name: str
    group: str
    higher_is_better: bool
    description: str


METRICS = {m.name: m for m in [
    Metric("average_drop", "faithfulness", False, "mean of max(0, Y − O)/Y, O = probability on image ⊙ L"),
    Metric("increase_in_confidence", "faithfulness", True, "fraction of images with O > Y"),
    Metric("add", "faithfulness", True, "mean of (Y − D)/Y, D = probability on image ⊙ (1 − L)"),
    Metric("deletion_auc", "faithfulness", False, "area under the probability as salient pixels are removed"),
    Metric("insertion_auc", "faithfulness", True, "area under the probability as salient pixels are inserted"),
    Metric("occlusion_correlation", "occlusion", True, "Spearman correlation with a 32-px occlusion map"),
    Metric("conservation_error", "axioms", False, "|S_c − Σ M| / |S_c| (XGrad-CAM)"),
    Metric("sensitivity_error", "axioms", False, "mean_k |w_k Σ A^k − (S_c − S_c(A∖A^k))| / |S_c| (XGrad-CAM)"),
    Metric("sensitivity_correlation", "axioms", True, "Pearson over k of w_k Σ A^k and S_c − S_c(A∖A^k)"),
    Metric("shapley_distance", "shapley", False, "L2 distance of unit-norm weights to Shapley values"),
    Metric("shapley_correlation", "shapley", True, "Spearman over k of weights and Shapley values"),
    Metric("localization_error_top1", "localization", False, "top-1 class wrong or box IoU < 0.5 (map at 15% of max)"),
    Metric("localization_error_top5", "localization", False, "no top-5 class right with box IoU ≥ 0.5"),
    Metric("box_iou", "localization", True, "IoU of the true class's box with its best ground-truth box"),
    Metric("pointing_game", "localization", True, "the true class's map peaks within 15 px of its region"),
    Metric("energy_pointing_game", "localization", True, "share of the true class's map inside its region"),
    Metric("mask_iou", "localization", True, "IoU of the map at 50% of max with the segmentation mask"),
]}
GROUPS = tuple(dict.fromkeys(m.group for m in METRICS.values()))
