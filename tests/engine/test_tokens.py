"""Token layers (issue 14): transformer outputs (B, N, C) and channels-last maps (B, h, w, C) as
the (B, C, h, w) maps of every method, checked against a hand-written reshape and the papers'
formulas (``reference``), on timm and torchvision transformers built with random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import camlens
from camlens import TokenLayout
from camlens.engine.layers import LayerError

from reference import GRADIENT_METHODS, assert_close, double, layer_map
from support import random_images

# (source, name, layer, prefix tokens or None for channels-last maps)
TRANSFORMERS = [
    ("timm", "vit_tiny_patch16_224", "blocks.11.norm1", 1),
    ("timm", "deit_tiny_distilled_patch16_224", "blocks.11.norm1", 2),
    ("timm", "swin_tiny_patch4_window7_224", "layers.3.blocks.1", None),
    ("torchvision", "vit_b_16", "encoder.layers.encoder_layer_11.ln_1", 1),
    ("torchvision", "swin_t", "features.7.1", None),
]


def build(source: str, name: str) -> nn.Module:
    torch.manual_seed(0)
    if source == "timm":
        timm = pytest.importorskip("timm")
        return timm.create_model(name, pretrained=False).eval()
    torchvision = pytest.importorskip("torchvision")
    model = getattr(torchvision.models, name)().eval()
    if hasattr(model, "heads"):  # torchvision's ViT starts with a zero head: no gradient would reach anything
        for parameter in model.heads.parameters():
            nn.init.normal_(parameter, std=0.02)
    return model


def hand_written(model: nn.Module, images: torch.Tensor, layer: str, prefix: int | None, score):
    """A and G of ``layer`` by a forward hook and one autograd call of ``score(output)`` summed,
    reshaped by hand: tokens ``X[:, prefix:]`` row by row onto the square grid, or channels-last
    maps permuted."""
    captured = {}

    def leaf(module, inputs, output):
        first = output[0] if isinstance(output, tuple) else output
        captured["x"] = first.detach().requires_grad_(True)
        return (captured["x"], *output[1:]) if isinstance(output, tuple) else captured["x"]

    handle = model.get_submodule(layer).register_forward_hook(leaf)
    try:
        output = model(images)
    finally:
        handle.remove()
    (gradient,) = torch.autograd.grad(score(output).sum(), captured["x"])
    x, g = captured["x"].detach(), gradient
    if prefix is None:  # (B, h, w, C)
        return x.permute(0, 3, 1, 2).numpy(), g.permute(0, 3, 1, 2).numpy()
    side = round((x.shape[1] - prefix) ** 0.5)
    as_maps = lambda t: t[:, prefix:].reshape(t.shape[0], side, side, t.shape[2]).permute(0, 3, 1, 2).numpy()  # noqa: E731
    return as_maps(x), as_maps(g)


def class_scores(classes: list[int]):
    def score(output):
        logits = output.logits if hasattr(output, "logits") else output
        return logits[torch.arange(len(classes)), torch.tensor(classes)]

    return score


def check_against_hand_written(explanation, A: np.ndarray, G: np.ndarray) -> None:
    assert_close(explanation.activations, A, 1e-12, "activations")
    assert_close(explanation.gradients, G, 1e-10, "gradients")
    assert np.abs(G).max() > 0  # a vacuous comparison otherwise
    for method in GRADIENT_METHODS:
        assert_close(explanation.layer_maps[method], layer_map(method, A, G), 1e-5, method)


@pytest.mark.parametrize("source,name,layer,prefix", TRANSFORMERS, ids=[t[1] for t in TRANSFORMERS])
def test_gradient_methods_on_token_layers_match_a_hand_written_reshape(source, name, layer, prefix):
    model = double(build(source, name))
    images = random_images(2, 224).double()
    explanation = camlens.explain(model, images, layer=layer, methods=GRADIENT_METHODS, target=[3, 7])
    check_against_hand_written(explanation, *hand_written(model, images, layer, prefix, class_scores([3, 7])))


def tiny_hugging_face(config: str, model: str) -> tuple[nn.Module, torch.Tensor]:
    """A two-block Hugging Face classifier of width 32 on 64-pixel images (float64), and two images."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    settings = getattr(transformers, config)(image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=64, num_labels=10)
    return double(getattr(transformers, model)(settings)), random_images(2, 64).double()


def test_hugging_face_vit_finds_its_layout_in_its_config():
    model, images = tiny_hugging_face("ViTConfig", "ViTForImageClassification")
    assert camlens.auto_layer(model, images) == "vit.layers.1.layernorm_before"
    explanation = camlens.explain(model, images, methods=GRADIENT_METHODS, target=[3, 7])
    assert explanation.activations.shape == (2, 32, 4, 4)
    check_against_hand_written(explanation, *hand_written(model, images, explanation.layer, 1, class_scores([3, 7])))


class _ImageEmbedding(nn.Module):
    """CLIP's image tower and projection, as a model of its own: image → embedding."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.clip.get_image_features(pixel_values=images)
        return features if isinstance(features, torch.Tensor) else features.pooler_output


def test_clip_image_text_similarity_through_the_vision_tower():
    """Why an image matches a text: the cosine similarity of CLIP's image embedding with a text
    embedding, explained at the vision tower's last block (its layout from the nested config)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                     "vocab_size": 100, "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 2,
                     "pad_token_id": 1},
        vision_config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                       "image_size": 64, "patch_size": 16},
        projection_dim=16)
    clip = transformers.CLIPModel(config).double().eval()
    text = clip.get_text_features(input_ids=torch.tensor([[0, 5, 7, 2]]))
    text = (text if isinstance(text, torch.Tensor) else text.pooler_output).detach()[0]
    model, images = _ImageEmbedding(clip).eval(), random_images(2, 64).double()
    explanation = camlens.explain(model, images, methods=GRADIENT_METHODS, target=camlens.SimilarityTarget(text))
    assert explanation.layer == "clip.vision_model.encoder.layers.1.layer_norm1"
    cosine = lambda embedding: torch.nn.functional.cosine_similarity(embedding, text[None], dim=1)  # noqa: E731
    check_against_hand_written(explanation, *hand_written(model, images, explanation.layer, 1, cosine))


@pytest.mark.parametrize("source,name,expected", [
    ("timm", "vit_tiny_patch16_224", "blocks.11.norm1"),
    ("timm", "deit_tiny_distilled_patch16_224", "blocks.11.norm1"),
    ("timm", "swin_tiny_patch4_window7_224", "layers.3.blocks.1"),
    ("torchvision", "vit_b_16", "encoder.layers.encoder_layer_11.ln_1"),
    ("torchvision", "swin_t", "features.7.1"),
])
def test_auto_picks_the_last_block_or_its_first_norm_never_the_patch_embedding(source, name, expected):
    model = build(source, name)
    assert camlens.auto_layer(model, random_images(1, 224)) == expected


def test_a_class_token_model_gives_its_last_block_no_gradient_on_the_patches():
    """Why ``auto`` goes one norm deeper on class-token models: after the last block only the
    class token reaches the head, and every map of the last block's output would be zero."""
    model = build("timm", "vit_tiny_patch16_224")
    explanation = camlens.explain(model, random_images(1, 224), layer="blocks.11", methods="gradcam")
    assert explanation.gradients.abs().max() == 0
    assert camlens.explain(model, random_images(1, 224), layer="blocks.11.norm1").gradients.abs().max() > 0


def test_the_after_layer_family_zeroes_a_channel_of_the_patch_tokens_only():
    """Ablation-CAM on a transformer block: zeroing map k is zeroing feature k of every patch
    token (the class token kept), evaluated by the network after the block — compared with a
    full forward where a hook does exactly that."""
    model = build("timm", "vit_tiny_patch16_224")
    images = random_images(1, 224)
    channels = torch.arange(0, 192, 37)
    explanation = camlens.explain(model, images, layer="blocks.9", methods=("ablationcam", "liftcam", "scorecam_fast"),
                                  target=5)
    with torch.no_grad():
        y = float(model(images)[0, 5])
        for k in channels.tolist():
            def zero(module, inputs, output, k=k):
                output = output.clone()
                output[:, 1:, k] = 0
                return output

            handle = model.blocks[9].register_forward_hook(zero)
            try:
                y_k = float(model(images)[0, 5])
            finally:
                handle.remove()
            expected = (y - y_k) / abs(y)
            assert explanation.weights["ablationcam"][0, k].item() == pytest.approx(expected, rel=2e-3, abs=2e-5)
    assert explanation.weights["liftcam"].abs().sum() > 0 and explanation.weights["scorecam_fast"].shape == (1, 192)


class _NoHints(nn.Module):
    """197 tokens of 8 features from a 224×224 image, and nothing that says how they lie."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 16, 16)
        self.cls = nn.Parameter(torch.zeros(1, 1, 8))
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), self.embed(x).flatten(2).transpose(1, 2)], dim=1)
        return self.head(self.mix(tokens).mean(dim=1))


def test_tokens_that_cannot_be_placed_are_refused_saying_what_to_pass():
    model = _NoHints().eval()
    images = random_images(1, 224)
    with pytest.raises(LayerError, match=r"197 tokens of 8 features.*pass tokens=TokenLayout\(prefix=1, grid=\(14, 14\)\)"):
        camlens.explain(model, images, layer="mix")
    explanation = camlens.explain(model, images, layer="mix", tokens=TokenLayout(prefix=1, grid=(14, 14)))
    assert explanation.layer_maps["gradcam"].shape == (1, 14, 14)
    assert all(not module._forward_hooks for module in model.modules())


def test_layouts_that_do_not_fit_are_refused_and_the_model_is_left_untouched():
    vit = build("timm", "vit_tiny_patch16_224")
    images = random_images(1, 224)
    with pytest.raises(LayerError, match=r"outputs 197 tokens, but tokens=.* means 1 \+ 13×13 = 170"):
        camlens.explain(vit, images, layer="blocks.11.norm1", tokens=TokenLayout(prefix=1, grid=(13, 13)))
    resnet = build("torchvision", "resnet18")
    with pytest.raises(LayerError, match=r"was given, but layer 'layer4' outputs shape \(1, 512, 7, 7\): \(B, C, h, w\) maps"):
        camlens.explain(resnet, images, layer="layer4", tokens=TokenLayout(prefix=1, grid=(7, 7)))
    with pytest.raises(ValueError, match=r"grid=\(h, w\) with h, w ≥ 1"):
        TokenLayout(prefix=1, grid=(0, 14))
    with pytest.raises(ValueError, match="prefix must be at least 0"):
        TokenLayout(prefix=-1, grid=(14, 14))
    for model in (vit, resnet):
        assert all(not module._forward_hooks for module in model.modules())
        assert not any(p.requires_grad is False for p in model.parameters())


def test_shapley_values_of_token_maps_add_up_to_the_score_they_share():
    """Efficiency, which every permutation satisfies exactly: the values of all 192 maps of a ViT
    block add up to the score with every map minus the score with none (all patch features zero,
    the class token kept)."""
    model = build("timm", "vit_tiny_patch16_224")
    images = random_images(1, 224)
    explanation = camlens.explain(model, images, layer="blocks.10", methods="shapley", target=5,
                                  options={"shapley": {"pairs": 1, "seed": 0}})

    def none(module, inputs, output):
        output = output.clone()
        output[:, 1:] = 0
        return output

    with torch.no_grad():
        everything = float(model(images)[0, 5])
        handle = model.blocks[10].register_forward_hook(none)
        try:
            nothing = float(model(images)[0, 5])
        finally:
            handle.remove()
    assert float(explanation.weights["shapley"].sum()) == pytest.approx(everything - nothing, rel=1e-4, abs=1e-5)


class _InPlaceAfterTokens(nn.Module):
    """Patch tokens without a class token, and an in-place addition straight after them."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 8, 8)
        self.tokens = nn.Flatten(2)
        self.out = nn.Identity()
        self.pos = nn.Parameter(torch.randn(1, 16, 8))
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.out(self.tokens(self.embed(x)).transpose(1, 2).contiguous())
        t += self.pos
        return self.head(torch.relu(t).mean(dim=1))


def test_the_model_goes_on_from_a_copy_of_the_recorded_maps():
    """What follows a token layer may work in place: the recorded maps must not change."""
    model = _InPlaceAfterTokens().eval()
    images = random_images(1, 32)
    layout = TokenLayout(prefix=0, grid=(4, 4))
    for methods in ("gradcam", ("guided_gradcam", "ablationcam")):
        explanation = camlens.explain(model, images, layer="out", methods=methods, tokens=layout)
        with torch.no_grad():
            expected = model.tokens(model.embed(images)).reshape(1, 8, 4, 4)
        torch.testing.assert_close(explanation.activations, expected)


def test_hugging_face_deit_declares_two_prefix_tokens_through_its_embeddings():
    """A distilled DeiT has a class and a distillation token; the layout counts both from its
    embeddings (not one for any Hugging Face config), and ``auto`` reaches its blocks."""
    model, images = tiny_hugging_face("DeiTConfig", "DeiTForImageClassificationWithTeacher")
    explanation = camlens.explain(model, images, methods=GRADIENT_METHODS, target=[1, 2])
    assert explanation.layer.endswith("layers.1.layernorm_before") and explanation.activations.shape == (2, 32, 4, 4)
    check_against_hand_written(explanation, *hand_written(model, images, explanation.layer, 2, class_scores([1, 2])))


def test_auto_refuses_blocks_it_cannot_place_rather_than_picking_the_patch_embedding():
    model = _NoHintsBlocks().eval()
    with pytest.raises(LayerError, match="layer='auto' found transformer blocks whose tokens it cannot place"):
        camlens.explain(model, random_images(1, 224))
    explanation = camlens.explain(model, random_images(1, 224), tokens=TokenLayout(prefix=1, grid=(14, 14)))
    assert explanation.layer == "blocks.1"


class _PatchTokens(nn.Module):
    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return maps.flatten(2).transpose(1, 2)


class _NoHintsBlocks(_NoHints):
    """_NoHints with its mixing in a Sequential of blocks after a layer of patch tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.patches = _PatchTokens()
        self.blocks = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patches(self.embed(x))
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), patches], dim=1)
        return self.head(self.blocks(tokens).mean(dim=1))


def test_cam_on_a_transformer_says_why_it_does_not_apply():
    with pytest.raises(ValueError, match=r"cam needs the layer to be followed by global average pooling .* 37 linear"):
        camlens.explain(build("timm", "vit_tiny_patch16_224"), random_images(1, 224), methods="cam")
