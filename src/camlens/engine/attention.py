r"""Recording a transformer's attention probabilities, as a graph autograd can reach.

Today's attention layers call ``F.scaled_dot_product_attention`` (timm, torchvision's
``nn.MultiheadAttention``, Hugging Face's default), a fused kernel that never forms the attention
matrix. :class:`AttentionRecorder`, a :class:`~torch.overrides.TorchFunctionMode`, computes those
calls the long way,

.. math:: A = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d}} + M\right), \qquad O = A\,V,

and keeps every :math:`A` (B, heads, N, N) in call order, so that attention rollout can multiply
them and gradient-weighted rollout can differentiate the score with respect to them. The model is
not modified; outside the context nothing changes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["AttentionRecorder"]


class AttentionRecorder(TorchFunctionMode):
    """Context manager: ``attentions`` holds each scaled-dot-product attention's probabilities
    (B, heads, N, M), in the order the model computed them."""

    def __init__(self) -> None:
        super().__init__()
        self.attentions: list[torch.Tensor] = []

    def __torch_function__(self, func: Any, types: tuple, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        return self._attend(*args, **kwargs)

    def _attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: torch.Tensor | None = None,
                dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                enable_gqa: bool = False) -> torch.Tensor:
        if enable_gqa and key.shape[-3] != query.shape[-3]:  # grouped-query attention: share key heads
            repeat = query.shape[-3] // key.shape[-3]
            key, value = key.repeat_interleave(repeat, dim=-3), value.repeat_interleave(repeat, dim=-3)
        logits = query @ key.transpose(-2, -1) * (scale if scale is not None else 1 / math.sqrt(query.shape[-1]))
        if is_causal:
            causal = torch.ones(query.shape[-2], key.shape[-2], dtype=torch.bool, device=query.device).tril()
            logits = logits.masked_fill(~causal, float("-inf"))
        if attn_mask is not None:
            logits = logits.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else logits + attn_mask
        attention = logits.softmax(dim=-1)
        self.attentions.append(attention)
        if dropout_p > 0:
            attention = F.dropout(attention, dropout_p)
        return attention @ value
