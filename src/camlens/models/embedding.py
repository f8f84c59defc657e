"""A classifier's embedding as a model of its own, for similarity targets."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Embedding"]


class Embedding(nn.Module):
    """``Embedding(model)(images)`` is ``model.features(images)``: the pooled features (B, D) a
    classifier reads, which make an embedding for "why do these two images match?". The model's
    layers keep their names under ``model.`` (``"model.backbone.layer4"``); its weights are shared,
    not copied."""

    def __init__(self, model: nn.Module, method: str = "features"):
        super().__init__()
        if not callable(getattr(model, method, None)):
            raise ValueError(f"{type(model).__name__} has no {method}() method to give its embedding")
        self.model = model
        self.method = method

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(images)
