"""Attention rollout (Abnar & Zuidema 2020) and gradient-weighted rollout (Chefer et al. 2021)
against an independent path: timm's ViT computing its attention explicitly (``fused_attn =
False``), the matrices taken from a hook on ``attn_drop`` and the formulas written in NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import camlens
from camlens import TokenLayout
from camlens.engine.layers import LayerError

from reference import assert_close
from support import random_images


def vit(name: str = "vit_tiny_patch16_224", explicit: bool = False) -> torch.nn.Module:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, depth=4).eval()
    if explicit:
        for block in model.blocks:
            block.attn.fused_attn = False
    return model


def explicit_attentions(model: torch.nn.Module, images: torch.Tensor, classes: list[int]):
    """Each block's attention probabilities (B, heads, N, N), seen where timm's unfused attention
    hands them to dropout, and the gradients of the classes' logits w.r.t. them, one row at a time."""
    kept: list[torch.Tensor] = []

    def keep(module, inputs, output):
        output.retain_grad()
        kept.append(output)

    handles = [block.attn.attn_drop.register_forward_hook(keep) for block in model.blocks]
    try:
        logits = model(images)
    finally:
        for handle in handles:
            handle.remove()
    gradients = []
    for row, cls in enumerate(classes):
        for attention in kept:
            attention.grad = None
        logits[row, cls].backward(retain_graph=True)
        gradients.append([attention.grad[row].numpy().copy() for attention in kept])
    return [a.detach().numpy() for a in kept], gradients


def numpy_rollout(attentions: list[np.ndarray], prefix: int) -> np.ndarray:
    relevance = None
    for attention in attentions:
        mixed = 0.5 * attention.mean(axis=1) + 0.5 * np.eye(attention.shape[-1])
        mixed /= mixed.sum(axis=-1, keepdims=True)
        relevance = mixed if relevance is None else mixed @ relevance
    return relevance[:, 0, prefix:].reshape(len(relevance), 14, 14)


def numpy_gradient_rollout(attentions: list[np.ndarray], gradients: list[np.ndarray], prefix: int) -> np.ndarray:
    relevance = np.eye(attentions[0].shape[-1])
    for attention, gradient in zip(attentions, gradients):
        relevance = relevance + np.maximum(gradient * attention, 0).mean(axis=0) @ relevance
    return relevance[0, prefix:].reshape(14, 14)


def test_the_recorder_sees_the_attention_the_fused_kernel_never_forms():
    from camlens.engine.attention import AttentionRecorder

    images = random_images(2, 224)
    explicit, _ = explicit_attentions(vit(explicit=True), images, [])
    with torch.no_grad(), AttentionRecorder() as recorder:
        vit()(images)
    assert len(recorder.attentions) == len(explicit) == 4
    for ours, theirs in zip(recorder.attentions, explicit):
        torch.testing.assert_close(ours, torch.from_numpy(theirs), rtol=1e-5, atol=1e-6)


def test_rollout_and_gradient_rollout_match_their_equations():
    images, classes = random_images(2, 224), [3, 7]
    explanation = camlens.explain(vit(), images, methods=("rollout", "gradient_rollout"), target=classes)
    attentions, gradients = explicit_attentions(vit(explicit=True), images, classes)
    assert_close(explanation.layer_maps["rollout"], numpy_rollout(attentions, 1), 1e-5, "rollout")
    for row in range(2):
        expected = numpy_gradient_rollout([a[row] for a in attentions], gradients[row], 1)
        assert_close(explanation.layer_maps["gradient_rollout"][row], expected, 1e-5, "gradient_rollout")
    assert not torch.allclose(explanation.layer_maps["gradient_rollout"][0], explanation.layer_maps["rollout"][0])
    assert explanation.maps["rollout"].shape == (2, 224, 224)


def test_two_prefix_tokens_are_left_out_of_the_map():
    explanation = camlens.explain(vit("deit_tiny_distilled_patch16_224"), random_images(1, 224), methods="rollout")
    assert explanation.layer_maps["rollout"].shape == (1, 14, 14)


class _Windowed(torch.nn.Module):
    """Self-attention within four windows of a 4×4 patch grid, as Swin attends."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.head = torch.nn.Conv2d(3, 8, 8, 8), torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x)                                           # (B, 8, 4, 4)
        windows = tokens.unfold(2, 2, 2).unfold(3, 2, 2)                 # (B, 8, 2, 2, 2, 2)
        windows = windows.permute(0, 2, 3, 4, 5, 1).reshape(-1, 1, 4, 8)  # (B·4, 1 head, 4 tokens, 8)
        mixed = torch.nn.functional.scaled_dot_product_attention(windows, windows, windows)
        return self.head(mixed.reshape(len(x), -1, 8).mean(dim=1))


def test_models_without_global_attention_are_refused():
    torchvision = pytest.importorskip("torchvision")
    with pytest.raises(ValueError, match="attends within windows"):
        camlens.explain(_Windowed().eval(), random_images(1, 32), layer="embed", methods="rollout")
    with pytest.raises(ValueError, match="computed none"):
        camlens.explain(torchvision.models.resnet18().eval(), random_images(1, 64), methods="gradient_rollout")


def test_multi_head_attention_is_computed_as_pytorch_does_while_recorded():
    """``nn.MultiheadAttention`` (torchvision's ViT, ``nn.TransformerEncoderLayer``) recomputed
    through the recorder gives the module's own outputs and weights, with and without masks."""
    from camlens.engine.attention import AttentionRecorder

    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16().eval()
    images = random_images(1, 224)
    with torch.no_grad():
        expected = model(images)
        with AttentionRecorder() as recorder:
            recorded = model(images)
    torch.testing.assert_close(recorded, expected, rtol=1e-4, atol=1e-5)
    assert [tuple(a.shape) for a in recorder.attentions] == [(1, 12, 197, 197)] * 12
    attention = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x = torch.randn(2, 5, 16)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)  # True: may not attend (PyTorch's convention)
    for mask in (None, causal, torch.randn(5, 5)):
        for average in (True, False):
            with torch.no_grad():
                out, weights = attention(x, x, x, attn_mask=mask, average_attn_weights=average)
                with AttentionRecorder() as recorder:
                    out_r, weights_r = attention(x, x, x, attn_mask=mask, average_attn_weights=average)
            torch.testing.assert_close(out_r, out, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(weights_r, weights, rtol=1e-5, atol=1e-6)
            assert recorder.attentions[0].shape == (2, 4, 5, 5)


class _TinyViT(torch.nn.Module):
    """A class token and 4×4 patch tokens, one block of nn.MultiheadAttention, no layout
    declared anywhere; ``padding_mask`` makes the attention use a key padding mask."""

    def __init__(self, padding_mask: bool = False) -> None:
        super().__init__()
        self.embed = torch.nn.Conv2d(3, 8, 8, 8)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, 8))
        self.attention = torch.nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = torch.nn.Linear(8, 3)
        self.padding_mask = padding_mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), self.embed(x).flatten(2).transpose(1, 2)], dim=1)
        mask = torch.zeros(len(x), tokens.shape[1], dtype=torch.bool) if self.padding_mask else None
        mixed, _ = self.attention(tokens, tokens, tokens, key_padding_mask=mask, need_weights=False)
        return self.head(mixed[:, 0])


def test_rollout_takes_a_given_layout_and_refuses_what_it_cannot_read():
    torch.manual_seed(0)
    images = random_images(1, 32)
    model = _TinyViT().eval()
    with pytest.raises(LayerError, match=r"17 tokens .*pass tokens=TokenLayout\(prefix=1, grid=\(4, 4\)\)"):
        camlens.explain(model, images, layer="attention", methods="rollout")
    explanation = camlens.explain(model, images, layer="attention", methods=("rollout", "gradient_rollout", "gradcam"),
                                  tokens=TokenLayout(prefix=1, grid=(4, 4)))
    assert explanation.layer_maps["gradient_rollout"].shape == (1, 4, 4)
    with pytest.raises(ValueError, match="options camlens does not recompute"):
        camlens.explain(_TinyViT(padding_mask=True).eval(), images, layer="attention", methods="rollout",
                        tokens=TokenLayout(prefix=1, grid=(4, 4)))
    timm = pytest.importorskip("timm")
    pooled = timm.create_model("vit_tiny_patch16_224", pretrained=False, class_token=False, global_pool="avg",
                               depth=2).eval()
    with pytest.raises(ValueError, match="has no prefix token"):
        camlens.explain(pooled, random_images(1, 224), methods="rollout")


def test_gradient_rollout_on_a_model_with_frozen_parameters():
    model = vit()
    model.requires_grad_(False)
    explanation = camlens.explain(model, random_images(1, 224), methods="gradient_rollout", target=3)
    assert explanation.layer_maps["gradient_rollout"].abs().sum() > 0
    assert not any(p.requires_grad for p in model.parameters())
