"""How a run measures (:class:`Protocol`), recorded beside its results: a results folder refuses
to resume under another protocol, model or layer, which would silently mix two definitions."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..data import Box
from ..metrics import faithfulness, localization
from ..models import LoadedModel

__all__ = ["Protocol", "ProtocolMismatch", "settle_protocol"]


@dataclass(frozen=True)
class Protocol:
    """How the metrics are measured; the defaults are the papers' (see PAPERS.md). A results
    folder records its protocol and refuses to resume under a different one.

    Attributes:
        steps: deletion/insertion steps (RISE uses one per 224 pixels; 32 here by default).
        score: ``"probability"`` (softmax, the LIFT-CAM / Grad-CAM++ metrics) or ``"logit"``.
        mask: ``"soft"`` (the normalized map) or ``"top50"`` (binary, top half of the pixels) for
            Average Drop, Increase in Confidence and ADD.
        box_threshold: a map is binarized at this fraction of its maximum before taking a box (15%).
        largest_component: box around the largest connected component (else around all of them).
        iou: the IoU a box needs for a correct localization (0.5).
        tolerance: pointing-game tolerance in pixels (15).
        mask_threshold: fraction of the maximum for the segmentation-seed IoU (0.5).
    """

    steps: int = 32
    score: faithfulness.ScoreKind = "probability"
    mask: faithfulness.MaskKind = "soft"
    box_threshold: float = 0.15
    largest_component: bool = True
    iou: float = 0.5
    tolerance: float = 15.0
    mask_threshold: float = 0.5

    def __post_init__(self) -> None:
        faithfulness.check_options(self.score, self.mask, self.steps)
        for name in ("box_threshold", "iou", "mask_threshold"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in (0, 1], not {getattr(self, name)}")

    def box(self, saliency: torch.Tensor) -> Box:
        """The Grad-CAM paper's localization box of a map, under this protocol's threshold and components."""
        return localization.box_from_map(saliency, self.box_threshold, self.largest_component)


class ProtocolMismatch(ValueError):
    """A results folder holds results measured under another protocol, model or layer."""


def settle_protocol(path: Path, protocol: Protocol, model: LoadedModel, layer: str, resuming: bool) -> None:
    """Write the run's protocol, model and layer; when resuming, refuse a different one (the
    results would silently mix two definitions)."""
    settings = {"protocol": asdict(protocol), "model": model.name, "layer": layer}
    if resuming and path.exists():
        earlier = json.loads(path.read_text(encoding="utf-8"))
        if earlier != settings:
            changed = sorted(k for k in set(earlier["protocol"]) | set(settings["protocol"])
                             if earlier["protocol"].get(k) != settings["protocol"].get(k))
            changed += [k for k in ("model", "layer") if earlier.get(k) != settings[k]]
            raise ProtocolMismatch(f"{path.parent} holds results under another protocol ({', '.join(changed)} differ): "
                                   "resume with the same settings, or restart")
    path.write_text(json.dumps(settings, indent=1), encoding="utf-8")
