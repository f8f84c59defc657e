"""What a method may use for the N rows being explained, computed once and shared."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import torch

from ..engine.after import AfterLayer
from ..targets import Target

__all__ = ["Evidence"]


class _Bar(Protocol):
    def update(self, n: int = 1) -> object: ...
    def __enter__(self) -> _Bar: ...
    def __exit__(self, *exc: object) -> object: ...


class _Silent:
    """A progress bar that shows nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@dataclass(eq=False)
class Evidence:
    """The layer's activations and gradients for each row, the target's scores, and access to
    the network after the layer (built on first use, then shared by all methods of the call)
    and to the full model on modified images."""

    activations: torch.Tensor          # (N, K, h, w), one per row
    gradients: torch.Tensor | None     # (N, K, h, w)
    scores: torch.Tensor               # (N,) the target's scores on the unmodified input
    classes: torch.Tensor              # (N,)
    image_index: torch.Tensor          # (N,)
    positions: torch.Tensor | None     # (N,) see TargetScores
    images: torch.Tensor               # (B, C, H, W) the image input
    target: Target
    # modified images (M, C, H, W) of images image_index (M,) → the (selected) model output, the
    # model's other inputs taken for the same images
    full_model: Callable[[torch.Tensor, torch.Tensor], object]
    build_after: Callable[[], AfterLayer] = field(repr=False)
    batch_size: int = 128        # activations evaluated at once by the network after the layer
    image_batch_size: int = 16   # images evaluated at once by the full model
    progress: bool = False       # show progress bars within the call (slow methods use it)

    def progress_bar(self, total: int, what: str) -> _Bar:
        """A transient progress bar (on stderr) for ``total`` steps of a slow method within one
        call, which can take minutes; a silent one unless :attr:`progress` is on. Use as a
        context manager and ``update(n)``."""
        if not self.progress:
            return _Silent()
        from tqdm import tqdm

        return tqdm(total=total, desc=what, leave=False, file=sys.stderr)

    @cached_property
    def after(self) -> AfterLayer:
        return self.build_after()

    def _rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Class, image (and position, where rows have one) of rows ``rows``, as
        :meth:`Target.rescore` takes them: a target written before positions existed still works."""
        keys = (self.classes[rows], self.image_index[rows])
        return keys if self.positions is None else (*keys, self.positions[rows])

    def values(self, activations: torch.Tensor, rows: torch.Tensor, real: int = 0) -> torch.Tensor:
        """The target's score when the layer outputs ``activations`` (M, K, h, w) for rows ``rows``
        (M,); the first ``real`` of them unmodified (see :class:`AfterLayer`)."""
        return self.target.rescore(self.after(activations, self.image_index[rows], real=real), *self._rows(rows))

    def values_coalitions(self, row: int, players: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The target's score of row ``row`` when only the maps ``players[masks[m]]`` are kept
        (every other map zero), for each coalition m (M,)."""
        rows = torch.full((masks.shape[0],), row, device=self.activations.device)
        outputs = self.after.coalitions(self.activations[row:row + 1], self.image_index[row:row + 1], players, masks)
        return self.target.rescore(outputs, *self._rows(rows))

    def values_growing(self, row: int, players: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
        """The target's score of row ``row`` along each order of ``players`` (P, K'): for order p,
        the coalitions of its first 0, 1, …, K' maps (P, K' + 1)."""
        rows = torch.full((orders.shape[0] * (players.numel() + 1),), row, device=self.activations.device)
        outputs = self.after.growing(self.activations[row:row + 1], self.image_index[row:row + 1], players, orders)
        return self.target.rescore(outputs, *self._rows(rows)).view(orders.shape[0], -1)

    def values_zeroing(self, rows: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        """The target's score for row ``rows[m]`` with map ``channels[m]`` set to zero (M,)."""
        outputs = self.after.zeroing_channels(self.activations, self.image_index, rows, channels)
        return self.target.rescore(outputs, *self._rows(rows))

    def image_values(self, images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The target's score of the full model on modified ``images`` (M, C, H, W) for rows ``rows``."""
        return self.target.rescore(self.full_model(images, self.image_index[rows]), *self._rows(rows))

    def image_confidence(self, images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """:meth:`Target.confidence` of the full model on modified ``images`` for rows ``rows``
        (the class probability for class targets: what Score-CAM weighs masks by)."""
        return self.target.confidence(self.full_model(images, self.image_index[rows]), *self._rows(rows))
