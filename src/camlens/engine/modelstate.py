"""Temporary changes to a user's model, always undone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["evaluation_mode", "model_device"]


@contextmanager
def evaluation_mode(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Put every module in eval mode for the duration, then restore each module's own
    ``training`` flag (models may mix modes, e.g. a frozen backbone in eval under a training head).
    Nothing else of the model is touched. Restores on exceptions too."""
    if not enabled:
        yield model
        return
    flags = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for module, training in flags:
            module.training = training


def model_device(model: nn.Module) -> torch.device | None:
    """Where the model's parameters are (its first one's device); ``None`` for a model without any."""
    first = next(model.parameters(), None)
    return first.device if first is not None else None
