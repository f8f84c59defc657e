"""What the function-intercepting modes (Guided Backprop, DeepLIFT) need to know about the calls
they see. ``torch.nn.functional`` passes every option to a mode as a keyword (``F.hardtanh(x, 0,
6, True)`` arrives as ``min_val=0, max_val=6, inplace=True``), so options are read from kwargs."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

__all__ = ["IN_PLACE_TWINS", "is_in_place", "out_of_place"]

# ReLU functions that always work in place → their out-of-place twin
IN_PLACE_TWINS: dict[Any, Any] = {torch.relu_: torch.relu, torch.Tensor.relu_: torch.relu, F.relu_: torch.relu}


def is_in_place(func: Any, kwargs: dict) -> bool:
    """Whether this call overwrites its input."""
    return func in IN_PLACE_TWINS or bool(kwargs.get("inplace", False))


def out_of_place(func: Any, kwargs: dict) -> tuple[Any, dict]:
    """The same computation without overwriting the input (to recompute local gradients)."""
    return IN_PLACE_TWINS.get(func, func), {k: v for k, v in kwargs.items() if k != "inplace"}
