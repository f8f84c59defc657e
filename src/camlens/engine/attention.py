r"""Recording a transformer's attention probabilities, as a graph autograd can reach.

Today's attention layers call ``F.scaled_dot_product_attention`` (timm, Hugging Face's
default), a fused kernel that never forms the attention matrix, or ``F.multi_head_attention_forward``
(``nn.MultiheadAttention``: torchvision's ViT, ``nn.TransformerEncoderLayer``), which forms it only
when asked for its weights. :class:`AttentionRecorder`, a :class:`~torch.overrides.TorchFunctionMode`,
computes the first the long way, and asks the second for its per-head weights (handing the caller
what it asked for),

.. math:: A = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d}} + M\right), \qquad O = A\,V,

and keeps every :math:`A` (B, heads, N, N) in call order, so that attention rollout can multiply
them and gradient-weighted rollout can differentiate the score with respect to them. The model is
not modified; outside the context nothing changes.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["AttentionRecorder"]

_MULTI_HEAD = inspect.signature(F.multi_head_attention_forward)


class AttentionRecorder(TorchFunctionMode):
    """Context manager: ``attentions`` holds each scaled-dot-product attention's probabilities
    (B, heads, N, M), in the order the model computed them; ``unrecorded`` counts the attention
    calls it let run unseen."""

    def __init__(self) -> None:
        super().__init__()
        self.attentions: list[torch.Tensor] = []
        self.unrecorded = 0  # attention calls run as they are (configurations not recomputed)

    def __torch_function__(self, func: Any, types: tuple, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return self._attend(*args, **kwargs)
        if func is F.multi_head_attention_forward:
            return self._multi_head(func, args, kwargs)
        return func(*args, **kwargs)

    def _multi_head(self, func: Any, args: tuple, kwargs: dict) -> Any:
        """``nn.MultiheadAttention``'s computation, its attention through :meth:`_attend`: the
        projections, the heads and the output projection as ``F.multi_head_attention_forward``
        does them. Configurations it rarely meets (extra key/value biases, a zero attention
        slot, static keys, key padding masks) run as they are, unrecorded."""
        call = _MULTI_HEAD.bind(*args, **kwargs)
        call.apply_defaults()
        p = call.arguments
        if (p["bias_k"] is not None or p["bias_v"] is not None or p["add_zero_attn"] or p["static_k"] is not None
                or p["static_v"] is not None or p["key_padding_mask"] is not None):
            self.unrecorded += 1
            return func(*args, **kwargs)
        query, key, value = p["query"], p["key"], p["value"]
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        (length, batch, width), heads = query.shape, p["num_heads"]
        biases = p["in_proj_bias"].chunk(3) if p["in_proj_bias"] is not None else (None, None, None)
        if p["use_separate_proj_weight"]:
            weights = (p["q_proj_weight"], p["k_proj_weight"], p["v_proj_weight"])
        else:
            weights = p["in_proj_weight"].chunk(3)
        split = lambda x: x.reshape(x.shape[0], batch, heads, width // heads).permute(1, 2, 0, 3)  # noqa: E731
        q, k, v = (split(F.linear(x, w, b)) for x, w, b in zip((query, key, value), weights, biases, strict=True))
        mask = p["attn_mask"]
        if mask is not None:
            mask = mask.view(batch, heads, *mask.shape[-2:]) if mask.dim() == 3 else mask
            mask = ~mask if mask.dtype == torch.bool else mask  # True: may not attend here; in sdpa, may
        attended = self._attend(q, k, v, attn_mask=mask, dropout_p=p["dropout_p"] if p["training"] else 0.0,
                                is_causal=bool(p["is_causal"]) and mask is None)
        output = F.linear(attended.permute(2, 0, 1, 3).reshape(length, batch, width), p["out_proj_weight"],
                          p["out_proj_bias"])
        attention = self.attentions[-1]
        if unbatched:
            output, attention = output.squeeze(1), attention.squeeze(0)
        if not p["need_weights"]:
            return output, None
        return output, attention.mean(dim=-3) if p["average_attn_weights"] else attention

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
