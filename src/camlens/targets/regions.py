"""Targets over regions of dense outputs (B, C, H, W): Grad-CAM's semantic segmentation target."""

from __future__ import annotations

import torch

from .base import Target, TargetScores

__all__ = ["SegmentationRegion"]


class SegmentationRegion(Target):
    """For a dense output (B, C, H, W): the sum of class ``class_index``'s logits over ``mask``
    ((H, W) shared, or (B, H, W)); a float mask weights the pixels. Grad-CAM's semantic
    segmentation target."""

    def __init__(self, class_index: int, mask: torch.Tensor):
        self.class_index = class_index
        self.mask = mask

    def __call__(self, output: torch.Tensor) -> TargetScores:
        if output.dim() != 4:
            raise ValueError(f"SegmentationRegion needs a (B, C, H, W) output; got shape {tuple(output.shape)}")
        batch, num_classes, height, width = output.shape
        if not 0 <= self.class_index < num_classes:
            raise ValueError(f"class index {self.class_index} is out of range: the output has {num_classes} classes")
        mask = torch.as_tensor(self.mask, device=output.device).to(output.dtype)
        if mask.shape[-2:] != (height, width) or mask.dim() not in (2, 3) or (mask.dim() == 3 and mask.shape[0] != batch):
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not match the output's (B, H, W) = {(batch, height, width)}")
        scores = (output[:, self.class_index] * mask).sum(dim=(1, 2))
        image_index = torch.arange(batch, device=output.device)
        return TargetScores(scores, image_index, torch.full_like(image_index, self.class_index))

    def rescore(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        mask = torch.as_tensor(self.mask, device=output.device).to(output.dtype)
        if mask.dim() == 3:
            mask = mask[image_index]
        return (output[:, self.class_index] * mask).sum(dim=(-2, -1))
