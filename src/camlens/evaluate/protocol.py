"""How a run measures (:class:`Protocol`) and what else defines its results, recorded beside
them: a results folder refuses to resume under another protocol, model, weights, layer, dataset
or options, which would silently mix two definitions in one table."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..data import Box, RunMismatch, Sample
from ..metrics import faithfulness, localization
from ..models import LoadedModel

__all__ = ["Protocol", "ProtocolMismatch", "settle_protocol", "model_fingerprint", "model_settings",
           "dataset_fingerprint"]


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


class ProtocolMismatch(RunMismatch):
    """A results folder holds results measured under another protocol, model, layer, dataset or
    options."""


def model_fingerprint(model: nn.Module) -> str:
    """A SHA-256 of the model's parameters and buffers (names, shapes, values): other weights,
    another fingerprint."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_settings(model: LoadedModel, layer: str) -> dict:
    """What of a model defines its results: its name, a fingerprint of its weights, how photos fit
    its input and the explained layer (recorded by resumable runs, see
    :func:`~camlens.data.resume_records`)."""
    return {"model": model.name, "weights": model_fingerprint(model.model), "fit": model.preprocessing.fit,
            "layer": layer}


def dataset_fingerprint(samples: Sequence[Sample]) -> str:
    """A SHA-256 of what a dataset says: each sample's id, file, label, boxes and mask, in order."""
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(repr((sample.id, str(sample.path), sample.label, sample.boxes, str(sample.mask))).encode())
    return digest.hexdigest()


# what may grow between a run and its resumption: the new methods or groups are computed for the
# old images; anything else that differs would mix two definitions in one table
_MAY_GROW = ("methods", "groups")
# settings recorded since a release, with what a run that did not record them used
_RECORDED_LATER = {"fit": "crop"}


def settle_protocol(path: Path, protocol: Protocol, model: LoadedModel, layer: str, resuming: bool, *,
                    samples: Sequence[Sample] = (), methods: Sequence[str] = (), groups: Sequence[str] = (),
                    options: dict | None = None) -> None:
    """Write what defines the run's results — the protocol, the model (name and a fingerprint of
    its weights), how photos fit its input, the layer, the dataset (a fingerprint of its samples, and their count), the
    methods, the metric groups and the methods' options — to ``path``. When resuming, refuse a
    run that differs in anything but added methods or metric groups, saying what differs."""
    settings = {"protocol": asdict(protocol), "model": model.name, "weights": model_fingerprint(model.model),
                "fit": model.preprocessing.fit, "layer": layer, "dataset": dataset_fingerprint(samples), "images": len(samples),
                "methods": list(methods), "groups": list(groups), "options": json.loads(json.dumps(options or {}))}
    if resuming and path.exists():
        earlier = _RECORDED_LATER | json.loads(path.read_text(encoding="utf-8"))
        changed = [f"protocol.{k}" for k in sorted(set(earlier.get("protocol", {})) | set(settings["protocol"]))
                   if earlier.get("protocol", {}).get(k) != settings["protocol"].get(k)]
        changed += [k for k in settings if k not in ("protocol", *_MAY_GROW) and earlier.get(k) != settings[k]]
        changed += [f"{k} (some removed)" for k in _MAY_GROW if not set(earlier.get(k, [])) <= set(settings[k])]
        if changed:
            raise ProtocolMismatch(f"{path.parent} holds results of another run ({', '.join(changed)} differ): "
                                   "resume with the same settings (methods and metric groups may be added), or "
                                   "start afresh with --restart (its results are discarded) or another --out")
    path.write_text(json.dumps(settings, indent=1), encoding="utf-8")
