"""What a method may use for the N rows being explained, computed once and shared."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import torch

from ..engine.after import AfterLayer

__all__ = ["Evidence"]


@dataclass(eq=False)
class Evidence:
    """The layer's activations and gradients for each row, the target's scores, and access to
    the network after the layer (built on first use, then shared by all methods of the call)."""

    activations: torch.Tensor          # (N, K, h, w), one per row
    gradients: torch.Tensor | None     # (N, K, h, w)
    scores: torch.Tensor               # (N,) the target's scores on the unmodified input
    classes: torch.Tensor              # (N,)
    image_index: torch.Tensor          # (N,)
    images: torch.Tensor               # (B, C, H, W)
    rescore: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    full_model: Callable[[torch.Tensor], torch.Tensor]  # images → the (selected) model output
    build_after: Callable[[], AfterLayer] = field(repr=False)
    batch_size: int = 128        # activations evaluated at once by the network after the layer
    image_batch_size: int = 16   # images evaluated at once by the full model

    @cached_property
    def after(self) -> AfterLayer:
        return self.build_after()

    def values(self, activations: torch.Tensor, rows: torch.Tensor, real: int = 0) -> torch.Tensor:
        """The target's score when the layer outputs ``activations`` (M, K, h, w) for rows ``rows``
        (M,); the first ``real`` of them unmodified (see :class:`AfterLayer`)."""
        images = self.image_index[rows]
        return self.rescore(self.after(activations, images, real=real), self.classes[rows], images)

    def values_zeroing(self, rows: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        """The target's score for row ``rows[m]`` with map ``channels[m]`` set to zero (M,)."""
        outputs = self.after.zeroing_channels(self.activations, self.image_index, rows, channels)
        return self.rescore(outputs, self.classes[rows], self.image_index[rows])

    def image_values(self, images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The target's score of the full model on modified ``images`` (M, C, H, W) for rows ``rows``."""
        return self.rescore(self.full_model(images), self.classes[rows], self.image_index[rows])
