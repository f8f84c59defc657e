r"""Targets over a detector's output: why did it find *this* box?

Detectors in torchvision's convention return one ``dict(boxes, labels, scores)`` per image
(``boxes`` (D, 4) as ``x0, y0, x1, y1`` in input pixels). :class:`BoxTarget` explains reference
boxes: row ``r`` of an image scores the detection that matches box ``r``: same label,
:math:`\mathrm{IoU} \geq` the threshold, and of those the one with the largest IoU (ties: the higher
score). Its score :math:`y = s_d` is that detection's score, differentiable through the detector.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import torch

from .base import Target, TargetScores

__all__ = ["BoxTarget", "NoMatchingDetection", "pairwise_iou"]


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box of ``a`` (N, 4) with every box of ``b`` (M, 4), boxes as ``x0, y0, x1, y1``."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = (bottom_right - top_left).clamp_min(0).prod(dim=2)
    area = lambda boxes: (boxes[:, 2:] - boxes[:, :2]).clamp_min(0).prod(dim=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp_min(torch.finfo(union.dtype).tiny), torch.zeros_like(union))


class NoMatchingDetection(ValueError):
    """No detection matches a reference box; ``image`` is its image's index in the batch."""

    def __init__(self, message: str, image: int):
        super().__init__(message)
        self.image = image


class BoxTarget(Target):
    """The score of the detection matching each reference box (see the module docstring).

    Args:
        boxes: reference boxes (R, 4) as ``x0, y0, x1, y1``, the same for every image, or one
            (R_b, 4) per image; x1 ≥ x0 and y1 ≥ y0.
        labels: the class of each reference box: (R,), or one (R_b,) per image.
        iou: the least IoU a detection needs to match (0.5).
        missing: ``"error"`` (default): a reference box that no detection matches is an error that
            names it; ``"zero"``: its row scores 0 (no gradient, so an empty map), with a warning.

    A perturbation that makes the matched detection disappear scores 0 for that row: the
    detector no longer finds the box.
    """

    structured = True

    def __init__(self, boxes: Sequence | torch.Tensor, labels: Sequence | torch.Tensor, iou: float = 0.5,
                 missing: str = "error"):
        if not 0 < iou <= 1:
            raise ValueError(f"iou must lie in (0, 1], not {iou}")
        if missing not in ("error", "zero"):
            raise ValueError(f"missing must be 'error' or 'zero', not {missing!r}")
        self.boxes, self.labels, self.iou, self.missing = boxes, labels, iou, missing
        # parsed and checked once, here, where a mistake was made: one entry for every image when
        # the boxes are shared, else one per image
        self._shared = boxes_shared(boxes)
        self._boxes, self._labels = self._parse()

    @staticmethod
    def _check_box(box: Sequence[float], index: int) -> None:
        if len(box) != 4:
            raise ValueError(f"reference box {index} has {len(box)} coordinates; give x0, y0, x1, y1")
        x0, y0, x1, y1 = box
        if x1 < x0 or y1 < y0:
            raise ValueError(f"reference box {index} {tuple(box)} has x1 < x0 or y1 < y0; boxes are x0, y0, x1, y1")

    def _parse(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The reference boxes (R_b, 4) and labels (R_b,): one pair shared by every image, or one per image."""
        if self._shared:
            shared = torch.as_tensor(self.boxes, dtype=torch.float32)
            boxes = [shared[None] if shared.dim() == 1 else shared]
            labels = [torch.as_tensor(self.labels).long().view(-1)]
        else:
            boxes = [torch.as_tensor(b, dtype=torch.float32) for b in self.boxes]
            boxes = [b.reshape(0, 4) if b.numel() == 0 else b[None] if b.dim() == 1 else b for b in boxes]
            labels = [torch.as_tensor(lab).long().view(-1) for lab in self.labels]
            if len(labels) != len(boxes):
                raise ValueError(f"got reference boxes for {len(boxes)} images but labels for {len(labels)}")
        for image, (b, lab) in enumerate(zip(boxes, labels)):
            if b.dim() != 2 or b.shape[-1] != 4:
                raise ValueError(f"reference boxes must have shape (R, 4); image {image} has {tuple(b.shape)}")
            if lab.numel() != b.shape[0]:
                raise ValueError(f"image {image} has {b.shape[0]} reference boxes but {lab.numel()} labels")
            for index, box in enumerate(b.tolist()):
                self._check_box(box, index)
        return boxes, labels

    def _reference(self, image: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image ``image``'s reference boxes and labels."""
        which = 0 if self._shared else image
        return self._boxes[which], self._labels[which]

    @staticmethod
    def _detections(output: object, batch: int | None = None) -> list[Mapping[str, torch.Tensor]]:
        if not isinstance(output, (list, tuple)) or not all(
                isinstance(d, Mapping) and {"boxes", "labels", "scores"} <= set(d) for d in output):
            raise ValueError(
                "a box target needs a detector's output: one dict(boxes, labels, scores) per image, as torchvision's "
                f"detectors return; got {type(output).__name__}"
            )
        if batch is not None and len(output) != batch:
            raise ValueError(f"the detector returned {len(output)} results for {batch} images")
        return list(output)

    def _match(self, detections: Mapping[str, torch.Tensor], box: torch.Tensor, label: int) -> int | None:
        """The index of the detection matching ``box`` (see the module docstring), or None."""
        found = detections["boxes"]
        if found.numel() == 0:
            return None
        overlap = pairwise_iou(box.to(found.device, found.dtype)[None], found.detach())[0]
        overlap = torch.where(detections["labels"] == label, overlap, torch.zeros_like(overlap))
        best = overlap.max()
        if best < self.iou:
            return None
        tied = (overlap == best).nonzero().view(-1)
        return int(tied[detections["scores"].detach()[tied].argmax()])

    def __call__(self, output: object) -> TargetScores:
        detections = self._detections(output)
        if not self._shared and len(self._boxes) != len(detections):
            raise ValueError(f"got boxes for {len(self._boxes)} images, but the batch has {len(detections)}")
        scores, image_index, classes, positions = [], [], [], []
        for image, found in enumerate(detections):
            boxes, labels = self._reference(image)
            for index, (box, label) in enumerate(zip(boxes, labels.tolist())):
                match = self._match(found, box, label)
                if match is None:
                    description = f"reference box {index} {tuple(round(v, 1) for v in box.tolist())} (label {label}) of image {image}"
                    if self.missing == "error":
                        raise NoMatchingDetection(
                            f"no detection matches {description} with IoU ≥ {self.iou} and the same label; the "
                            f"detector found {len(found['boxes'])} box(es). Pass missing='zero' to explain it as a "
                            "score of 0", image)
                    warnings.warn(f"no detection matches {description}: its row scores 0", RuntimeWarning, stacklevel=3)
                    scores.append(found["scores"].sum() * 0)
                else:
                    scores.append(found["scores"][match])
                image_index.append(image)
                classes.append(label)
                positions.append(index)
        if not scores:
            raise ValueError("no reference box to explain")
        device = scores[0].device
        as_long = lambda values: torch.tensor(values, device=device, dtype=torch.long)  # noqa: E731
        return TargetScores(torch.stack(scores), as_long(image_index), as_long(classes), as_long(positions))

    def rescore(self, output: object, classes: torch.Tensor, image_index: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        detections = self._detections(output, image_index.numel())
        values = []
        for found, image, index, label in zip(detections, image_index.tolist(), positions.tolist(), classes.tolist()):
            match = self._match(found, self._reference(image)[0][index], label)
            values.append(found["scores"][match] if match is not None else found["scores"].sum() * 0)
        return torch.stack(values)


def boxes_shared(boxes: object) -> bool:
    """Whether ``boxes`` is one (R, 4) set (or one box) for every image, rather than one set per image."""
    if isinstance(boxes, torch.Tensor):
        return boxes.dim() in (1, 2)
    try:
        return torch.as_tensor(boxes, dtype=torch.float64).dim() in (1, 2)
    except (ValueError, TypeError):  # ragged: one list of boxes per image
        return False
