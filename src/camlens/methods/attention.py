r"""Transformer-native baselines, from the attention probabilities of every block
(:class:`~camlens.engine.attention.AttentionRecorder`), read out at the class token's row.

**Attention rollout** (Abnar & Zuidema, *Quantifying Attention Flow in Transformers*, ACL 2020):
attention mixed with the residual connection, averaged over heads, multiplied through the blocks,

.. math:: \tilde A_l = \tfrac12\,\mathbb{E}_h A_l + \tfrac12 I \;\;(\text{rows renormalized}), \qquad
          R = \tilde A_L \cdots \tilde A_1, \qquad \text{map} = R_{0,\,P:}

— class-agnostic: every class of an image gets the same map.

**Gradient-weighted rollout** (Chefer, Gur & Wolf, *Generic Attention-model Explainability for
Interpreting Bi-Modal and Encoder-Decoder Transformers*, ICCV 2021, eq. 5–6): each block's
attention weighted by the gradient of the explained score, positive part, averaged over heads,
accumulated from the first block on,

.. math:: \bar A_l = \mathbb{E}_h\big[(\nabla_{A_l} y \odot A_l)^+\big], \qquad R \leftarrow R + \bar A_l R
          \;\;(R = I \text{ before the first block}), \qquad \text{map} = R_{0,\,P:}.

Both read the row of the first token (the class token) over the patch tokens after the ``P``
prefix tokens, laid on the patch grid. Reading: the class token is the first token, as in ViT,
DeiT (whose distillation token, the second, is left out of the map with the other prefix tokens)
and CLIP; Chefer et al. subtract the identity only for the self-relevance of the class token,
which is not part of the map here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..engine.attention import AttentionRecorder
from ..engine.inputs import ModelInputs
from ..engine.outputs import OutputSelector, select_output
from ..engine.tokens import TokenLayout, find_layout
from ..targets import Target

__all__ = ["rollout", "gradient_rollout", "attention_layer_maps"]


def _eye_like(attention: torch.Tensor) -> torch.Tensor:
    return torch.eye(attention.shape[-1], dtype=attention.dtype, device=attention.device).expand_as(attention[:, 0])


def _read(relevance: torch.Tensor, prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    return relevance[:, 0, prefix:].reshape(relevance.shape[0], *grid)


def rollout(attentions: Sequence[torch.Tensor], prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """Attention rollout: attentions (B, heads, N, N) per block, in order → maps (B, h, w)."""
    relevance = None
    for attention in attentions:
        mixed = 0.5 * attention.mean(dim=1) + 0.5 * _eye_like(attention)
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        relevance = mixed if relevance is None else mixed @ relevance
    return _read(relevance, prefix, grid)


def gradient_rollout(attentions: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor], prefix: int,
                     grid: tuple[int, int]) -> torch.Tensor:
    """Chefer et al.'s relevance: attentions and the score's gradients w.r.t. them (M, heads, N,
    N) per block, in order → maps (M, h, w)."""
    relevance = _eye_like(attentions[0]).clone()
    for attention, gradient in zip(attentions, gradients, strict=True):
        weighted = (gradient * attention).clamp_min(0).mean(dim=1)
        relevance = relevance + weighted @ relevance
    return _read(relevance, prefix, grid)


def attention_layer_maps(model: torch.nn.Module, inputs: ModelInputs, names: Sequence[str], target: Target,
                         output: OutputSelector, groups_of, layer: str,
                         tokens: TokenLayout | None = None) -> dict[str, torch.Tensor]:
    """The maps (rows, h, w) of the attention methods ``names`` (``rollout``,
    ``gradient_rollout``): one forward pass of the whole model recording every attention, and for
    the gradient-weighted one a backward per group of rows (``groups_of(image_index)`` gives
    groups in which no image appears twice). The prefix tokens and the grid are ``tokens``, or
    the layout found around ``layer`` (see :func:`~camlens.engine.tokens.find_layout`). The image
    is made a leaf of the graph, so that a model whose parameters are frozen still has one."""
    inputs = inputs.map(lambda v, _: v.clone() if isinstance(v, torch.Tensor) and v.is_inference() else v)
    inputs = inputs.with_image(inputs.image.detach().requires_grad_(True))
    with torch.inference_mode(False), torch.enable_grad(), AttentionRecorder() as recorder:
        prediction = select_output(inputs(model), output, structured=target.structured)
        scores = target(prediction)
    attentions, batch = recorder.attentions, inputs.image.shape[0]
    listed = ", ".join(names)
    if recorder.unrecorded:
        raise ValueError(f"{listed} need every block's attention; {recorder.unrecorded} of {type(model).__name__}'s "
                         "attention calls use options camlens does not recompute (key padding masks, extra key and "
                         "value biases, a zero attention slot, static keys)")
    if not attentions:
        raise ValueError(f"{listed} need a transformer's attention, and {type(model).__name__} computed none "
                         "through torch.nn.functional.scaled_dot_product_attention (attention a model forms itself, "
                         "as timm's Swin or Hugging Face's eager attention do, is not seen)")
    tokens_count = attentions[0].shape[-1]
    if any(a.shape[0] != batch or a.shape[-2:] != (tokens_count, tokens_count) for a in attentions):
        shapes = sorted({tuple(a.shape) for a in attentions})
        raise ValueError(f"{listed} need global self-attention over every token in every block; "
                         f"{type(model).__name__} attends within windows or over other tokens (shapes {shapes[:3]})")
    layout = tokens or find_layout(model, layer, torch.empty(1, tokens_count, 1, device="meta"),
                                   tuple(inputs.image.shape[-2:]))
    if layout is None or layout.channels_last:
        raise ValueError(f"the {tokens_count} tokens of {type(model).__name__}'s attention do not lie on a patch grid")
    layout.check(torch.empty(1, tokens_count, 1, device="meta"), "the attention")
    if layout.prefix == 0:
        raise ValueError(f"{listed} read the class token's row of the relevance, and {type(model).__name__} has no "
                         "prefix token (it pools its patch tokens): use a gradient method on its last block")
    maps: dict[str, torch.Tensor] = {}
    index = scores.image_index
    if "rollout" in names:
        maps["rollout"] = rollout([a.detach() for a in attentions], layout.prefix, layout.grid)[index]
    if "gradient_rollout" in names:
        result = torch.empty(len(index), *layout.grid, dtype=attentions[0].dtype, device=attentions[0].device)
        groups = groups_of(index)
        for number, rows in enumerate(groups):
            gradients = torch.autograd.grad(scores.scores[rows].sum(), attentions, retain_graph=number < len(groups) - 1)
            images = index[rows]
            result[rows] = gradient_rollout([a.detach()[images] for a in attentions], [g[images] for g in gradients],
                                            layout.prefix, layout.grid)
        maps["gradient_rollout"] = result
    return maps
