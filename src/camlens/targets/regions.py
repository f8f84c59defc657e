r"""Targets over regions of dense outputs: Grad-CAM's semantic segmentation target, and the score
inside a region of a heatmap (a face detector's probability map, a text detector's region score).

Both score :math:`y = \sum_{ij} M_{ij}\, O_{c,ij}`: the output's channel ``c`` summed over a mask
``M`` ((H, W) for every image or (B, H, W); a float mask weights the pixels).
"""

from __future__ import annotations

import torch

from .base import Target, TargetScores

__all__ = ["RegionScore", "SegmentationRegion"]


class RegionScore(Target):
    r"""The sum of a dense output inside ``mask``, :math:`\sum_{ij} M_{ij} O_{c,ij}`.

    ``output`` is (B, H, W) (one map per image) or (B, C, H, W); ``channel`` picks ``c`` from the
    latter and may be omitted when C = 1. The mask must have the output's H × W: a mask drawn on
    the input image is resized to the output by the caller, who knows how the two align.
    """

    def __init__(self, mask: torch.Tensor, channel: int | None = None):
        self.mask = mask
        self.channel = channel

    def _maps(self, output: torch.Tensor) -> torch.Tensor:
        """The (B, H, W) maps the mask is laid over."""
        if output.dim() == 3:
            if self.channel not in (None, 0):
                raise ValueError(f"channel {self.channel} asked of a (B, H, W) output, which has one map per image")
            return output
        if output.dim() != 4:
            raise ValueError(f"{type(self).__name__} needs a dense (B, H, W) or (B, C, H, W) output; "
                             f"got shape {tuple(output.shape)}")
        channels = output.shape[1]
        if self.channel is None:
            if channels != 1:
                raise ValueError(f"the output has {channels} channels; say which one with channel=")
            return output[:, 0]
        if not 0 <= self.channel < channels:
            raise ValueError(f"channel {self.channel} is out of range: the output has {channels} channels")
        return output[:, self.channel]

    def _mask(self, maps: torch.Tensor) -> torch.Tensor:
        batch, height, width = maps.shape
        mask = torch.as_tensor(self.mask, device=maps.device).to(maps.dtype)
        if mask.shape[-2:] != (height, width) or mask.dim() not in (2, 3) or (mask.dim() == 3 and mask.shape[0] != batch):
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not match the output's (B, H, W) = {(batch, height, width)}")
        return mask

    def _class(self) -> int:
        return -1

    def __call__(self, output: torch.Tensor) -> TargetScores:
        maps = self._maps(output)
        scores = (maps * self._mask(maps)).sum(dim=(1, 2))
        image_index = torch.arange(maps.shape[0], device=output.device)
        return TargetScores(scores, image_index, torch.full_like(image_index, self._class()), per_image=1)

    def rescore(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        maps = self._maps(output)
        mask = torch.as_tensor(self.mask, device=output.device).to(output.dtype)
        if mask.dim() == 3:
            mask = mask[image_index]
        return (maps * mask).sum(dim=(-2, -1))


class SegmentationRegion(RegionScore):
    """For a segmentation output (B, C, H, W): the sum of class ``class_index``'s logits over
    ``mask``. Grad-CAM's semantic segmentation target; each row's class is ``class_index``."""

    def __init__(self, class_index: int, mask: torch.Tensor):
        super().__init__(mask, channel=class_index)
        self.class_index = class_index

    def _maps(self, output: torch.Tensor) -> torch.Tensor:
        if output.dim() != 4:
            raise ValueError(f"SegmentationRegion needs a (B, C, H, W) output; got shape {tuple(output.shape)}")
        if not 0 <= self.class_index < output.shape[1]:
            raise ValueError(f"class index {self.class_index} is out of range: the output has {output.shape[1]} classes")
        return output[:, self.class_index]

    def _class(self) -> int:
        return self.class_index
