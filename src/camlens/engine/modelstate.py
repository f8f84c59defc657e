"""Temporary changes to a user's model, always undone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["evaluation_mode", "model_device", "resolve_device"]


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


def resolve_device(text: str | torch.device) -> torch.device:
    """A device by name: ``"auto"`` (the first CUDA device when there is one, else the CPU),
    ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. ``ValueError`` for a name PyTorch does not know or a
    CUDA device it cannot see."""
    if isinstance(text, torch.device):
        return text
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError as error:
        raise ValueError(f"unknown device {text!r}; use auto, cpu, cuda or cuda:N") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {text}, but PyTorch sees no CUDA device here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {text}, but PyTorch sees {torch.cuda.device_count()} CUDA device(s)")
    return device


def model_device(model: nn.Module) -> torch.device | None:
    """Where the model's parameters are (its first one's device); ``None`` for a model without any."""
    first = next(model.parameters(), None)
    return first.device if first is not None else None
