r"""Targets over regions of dense outputs: Grad-CAM's semantic segmentation target, and the score
inside a region of a heatmap (a face detector's probability map, a text detector's region score).

Both score :math:`y = \sum_{ij} M_{ij}\, O_{c,ij}`: the output's channel ``c`` summed over a mask
``M`` ((H, W) for every image or (B, H, W); a float mask weights the pixels).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import Target, TargetScores
from .detections import boxes_shared

__all__ = ["BoxRegion", "EmptyRegion", "RegionScore", "SegmentationRegion"]


class RegionScore(Target):
    r"""The sum of a dense output inside ``mask``, :math:`\sum_{ij} M_{ij} O_{c,ij}`.

    ``output`` is (B, H, W) (one map per image) or (B, C, H, W); ``channel`` picks ``c`` from the
    latter and may be omitted when C = 1. The mask must have the output's H × W: a mask drawn on
    the input image is resized to the output by the caller, who knows how the two align (or use
    :class:`BoxRegion`). ``mask=None`` sums the whole map: "why does it score high anywhere?".
    """

    def __init__(self, mask: torch.Tensor | None, channel: int | None = None):
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
        if self.mask is None:
            return torch.ones_like(maps)
        mask = torch.as_tensor(self.mask, device=maps.device).to(maps.dtype)
        if mask.shape[-2:] != (height, width) or mask.dim() not in (2, 3) or (mask.dim() == 3 and mask.shape[0] != batch):
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not match the output's (B, H, W) = {(batch, height, width)}")
        return mask

    def _class(self) -> int:
        """A row's class: the channel explained (-1 for a map without channels)."""
        return -1 if self.channel is None else self.channel

    def __call__(self, output: torch.Tensor) -> TargetScores:
        maps = self._maps(output)
        scores = (maps * self._mask(maps)).sum(dim=(1, 2))
        image_index = torch.arange(maps.shape[0], device=output.device)
        return TargetScores(scores, image_index, torch.full_like(image_index, self._class()), per_image=1)

    def rescore(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        maps = self._maps(output)
        if self.mask is None:
            return maps.sum(dim=(-2, -1))
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


class BoxRegion(RegionScore):
    r"""The sum of a dense output inside boxes drawn on the *input* image, one row per box: a text
    detector's region score over each word, a face detector's probability over each face.

    ``boxes`` are ``(x0, y0, x1, y1)`` in the input's pixels, as :class:`BoxTarget` takes them:
    one box (4,) or one set (R, 4) for every image, or a sequence of one set (R_b, 4) per image.
    Rows are image-major; a row's position is its box's index in its image's set, its class the
    channel. ``size`` is the input's (height, width).

    The output map (h, w) may be smaller than the input (CRAFT's is half of it): the mask is built
    when the output is seen, an output pixel counting when its centre lies inside the box, centres
    spread evenly over the input, :math:`x_j = (j + \tfrac12)\, W / w` — the geometry by which
    camlens upsamples every map, exact for convolutions padded to keep their size. A network of
    unpadded convolutions places its pixels otherwise (MTCNN's P-Net: pixel ``j`` sees the
    12-pixel window from ``2j``, centred at ``2j + 6``), so box and map are both off by up to
    half the difference (5 pixels for P-Net) at the edges of its input. A box with no output
    pixel inside is :class:`EmptyRegion`. :math:`y = \sum_{ij} M_{ij} O_{c,ij}` as for
    :class:`RegionScore`.
    """

    def __init__(self, boxes: torch.Tensor | Sequence, size: tuple[int, int], channel: int | None = None):
        shared = boxes_shared(boxes)
        sets = [torch.as_tensor(boxes, dtype=torch.float32)] if shared else \
            [torch.as_tensor(b, dtype=torch.float32) for b in boxes]
        sets = [b.reshape(0, 4) if b.numel() == 0 else b[None] if b.dim() == 1 else b for b in sets]
        for image, found in enumerate(sets):
            if found.dim() != 2 or found.shape[-1] != 4:
                raise ValueError(f"boxes must be (4,) or (R, 4) as x0, y0, x1, y1, or one (R, 4) per image; got shape "
                                 f"{tuple(found.shape)}" + ("" if shared else f" for image {image}"))
            if ((found[:, 2] <= found[:, 0]) | (found[:, 3] <= found[:, 1])).any():
                raise ValueError("a box has x1 ≤ x0 or y1 ≤ y0: boxes are x0, y0, x1, y1 with positive size")
        if not any(len(found) for found in sets):
            raise ValueError("no box to explain")
        height, width = size
        if height <= 0 or width <= 0:
            raise ValueError(f"size must be the input's positive (height, width), not {size}")
        super().__init__(None, channel)
        self.shared, self.size = shared, (int(height), int(width))
        self.counts = [len(found) for found in sets]
        self.boxes = torch.cat(sets)  # every set's boxes, one after another
        self.starts = torch.tensor([0, *self.counts[:-1]]).cumsum(0)  # where each image's set begins

    def __call__(self, output: torch.Tensor) -> TargetScores:
        maps = self._maps(output)
        batch = maps.shape[0]
        if not self.shared and len(self.counts) != batch:
            raise ValueError(f"got boxes for {len(self.counts)} images, but the batch has {batch}")
        counts = torch.tensor(self.counts * batch if self.shared else self.counts)
        image_index = torch.repeat_interleave(torch.arange(batch), counts)
        positions = torch.cat([torch.arange(count) for count in counts.tolist()])  # the user's boxes: on the CPU
        image_index, positions = image_index.to(output.device), positions.to(output.device)
        scores = (maps[image_index] * self._box_masks(self._row_boxes(image_index, positions), maps)).sum(dim=(1, 2))
        return TargetScores(scores, image_index, torch.full_like(image_index, self._class()), positions,
                            per_image=self.counts[0] if self.shared else None)

    def rescore(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        maps = self._maps(output)
        return (maps * self._box_masks(self._row_boxes(image_index, positions), maps)).sum(dim=(-2, -1))

    def _row_boxes(self, image_index: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The box (N, 4) of each row, on the rows' device."""
        boxes, starts = self.boxes.to(positions.device), self.starts.to(positions.device)
        return boxes[positions if self.shared else starts[image_index] + positions]

    def _box_masks(self, boxes: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """(N, h, w) masks of ``boxes`` (N, 4) on the output maps (B, h, w): output pixels whose
        centres, scaled to the input, lie inside."""
        height, width = maps.shape[-2:]
        ys = (torch.arange(height, device=maps.device, dtype=torch.float32) + 0.5) * self.size[0] / height
        xs = (torch.arange(width, device=maps.device, dtype=torch.float32) + 0.5) * self.size[1] / width
        boxes = boxes.to(maps.device)
        inside_y = (ys >= boxes[:, 1:2]) & (ys < boxes[:, 3:4])
        inside_x = (xs >= boxes[:, 0:1]) & (xs < boxes[:, 2:3])
        masks = inside_y[:, :, None] & inside_x[:, None, :]
        if not masks.flatten(1).any(dim=1).all():
            raise EmptyRegion(f"a box covers no pixel of the {height}×{width} output (no pixel centre lies inside it)")
        return masks.to(maps.dtype)


class EmptyRegion(ValueError):
    """A box of :class:`BoxRegion` holds no pixel of the output: too small, or outside the input."""
