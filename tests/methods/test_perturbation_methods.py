"""Ablation-CAM, Score-CAM, LIFT-CAM and Shapley values against brute force and captum."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import camlens

from support import random_images


def forward_with(model, images, layer, edit):
    """The full model's logits with ``edit`` applied to the layer's output (a plain hook)."""
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: edit(o.clone()))
    try:
        with torch.no_grad():
            return model(images)
    finally:
        handle.remove()


def brute_force_ablation(model, images, layer, cls, channels):
    y = forward_with(model, images, layer, lambda o: o)[0, cls]
    weights = []
    for k in channels:
        def zero(o, k=k):
            o[:, k] = 0
            return o
        weights.append((y - forward_with(model, images, layer, zero)[0, cls]) / y.abs())
    return torch.stack(weights)


def check_ablation(model, images, layer, channels, target=None):
    explanation = camlens.explain(model, images, layer=layer, methods="ablationcam", target=target, batch_size=100)
    cls = int(explanation.targets[0])
    expected = brute_force_ablation(model, images, layer, cls, channels)
    torch.testing.assert_close(explanation.weights["ablationcam"][0, channels], expected, rtol=2e-3, atol=2e-5)
    return explanation


def test_ablationcam_equals_brute_force_on_mobilenet_v2(mobilenet, imagenet_photos):
    model, preprocess = mobilenet
    images = torch.stack([preprocess(imagenet_photos[0])])
    full = camlens.explain(model, images, layer="features.18", methods="gradcam")
    top = (full.gradients[0] * full.activations[0]).sum(dim=(1, 2)).abs().topk(12).indices
    channels = torch.cat([top, torch.arange(0, 1280, 160)])  # the most influential and a spread of others
    explanation = check_ablation(model, images, "features.18", channels)
    assert explanation.weights["ablationcam"][0, top].abs().max() > 1e-3  # not a vacuous comparison


@pytest.mark.parametrize("name,layer", [("resnet50", "layer4"), ("vgg16", "features.29")])
def test_ablationcam_equals_brute_force_on_torchvision(name, layer):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    check_ablation(model, random_images(1, 224 if name == "vgg16" else 128), layer, torch.arange(0, 512, 43))


def test_ablationcam_keeps_the_sign_of_the_drop_when_the_score_is_negative():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    images = random_images(1, 96)
    logits = model(images)[0].detach()
    cls = int(logits.argmin())
    assert logits[cls] < 0
    explanation = check_ablation(model, images, "layer4", torch.arange(0, 512, 37), target=cls)
    y = float(logits[cls])
    drops = y - (y - explanation.weights["ablationcam"][0] * abs(y))  # reconstructs y − y_k
    assert torch.equal(torch.sign(explanation.weights["ablationcam"][0]), torch.sign(drops))


def test_liftcam_equals_exact_shapley_on_a_linear_head():
    """ResNet layer4 → GAP → fc is linear in A: every map's Shapley value is W[c]·GAP(A^k)."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    images = random_images(2, 128)
    explanation = camlens.explain(model, images, layer="layer4", methods=("liftcam", "shapley"),
                                  options={"shapley": {"pairs": 2}})
    expected = model.fc.weight[explanation.targets].detach() * explanation.activations.mean(dim=(2, 3))
    torch.testing.assert_close(explanation.weights["liftcam"], expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(explanation.weights["shapley"], expected, rtol=1e-3, atol=1e-5)
    assert explanation.errors["shapley"].abs().max() < 1e-4  # a linear game has no sampling variance


def test_liftcam_agrees_with_captum_deeplift_on_the_subnetwork():
    captum = pytest.importorskip("captum.attr")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.vgg16().eval()
    for module in model.modules():  # captum's module hooks need out-of-place ReLUs
        if isinstance(module, nn.ReLU):
            module.inplace = False
    images = random_images(1, 224, seed=2)
    explanation = camlens.explain(model, images, layer="features.29", methods="liftcam")
    sub = nn.Sequential(model.features[30:], model.avgpool, nn.Flatten(), model.classifier).eval()
    activations = explanation.activations
    attributions = captum.DeepLift(sub).attribute(activations, baselines=torch.zeros_like(activations),
                                                  target=int(explanation.targets[0]))
    expected = attributions.sum(dim=(2, 3))
    torch.testing.assert_close(explanation.weights["liftcam"], expected, rtol=1e-3, atol=1e-5 * float(expected.abs().max()))


@pytest.mark.parametrize("layer", ["_blocks.12", "_blocks.9._depthwise_conv"])
def test_liftcam_summation_to_delta_through_relu6_and_residual_blocks(lite0, lite0_batch, layer):
    model, _ = lite0
    images = lite0_batch[:2]
    explanation = camlens.explain(model, images, layer=layer, methods="liftcam")
    for row in range(2):
        cls = int(explanation.targets[row])
        y_zero = forward_with(model, images[row:row + 1], layer, lambda o: torch.zeros_like(o))[0, cls]
        delta = explanation.scores[row] - y_zero
        total = explanation.weights["liftcam"][row].sum()
        assert abs(float(total - delta)) <= 1e-3 * max(1.0, abs(float(delta))), (float(total), float(delta))
        # and it is not plain gradient × activation: the head is nonlinear
    gradient_times_input = camlens.explain(model, images, layer=layer, methods="gradcam")
    assert not torch.allclose((gradient_times_input.gradients * gradient_times_input.activations).sum(dim=(2, 3)),
                              explanation.weights["liftcam"], rtol=1e-2)


class Tiny(nn.Module):
    """K maps, then a nonlinear head: 1×1 conv, ReLU, 2×2 max-pool, linear."""

    def __init__(self, channels: int):
        super().__init__()
        torch.manual_seed(channels)
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.relu = nn.ReLU()
        self.mix = nn.Conv2d(channels, 4, 1)
        self.fc = nn.Linear(4 * 4 * 4, 3)  # 8×8 inputs pool to 4×4

    def forward(self, x):
        hidden = F.max_pool2d(F.relu(self.mix(self.relu(self.conv(x)))), 2)
        return self.fc(hidden.flatten(1))


def brute_force_shapley(model, image, cls):
    """Written out from the definition: every coalition S of maps kept, the others zeroed."""
    with torch.no_grad():
        activations = model.relu(model.conv(image))
        channels = activations.shape[1]

        def value(coalition):
            mask = torch.zeros(channels)
            mask[list(coalition)] = 1
            hidden = F.max_pool2d(F.relu(model.mix(activations * mask[None, :, None, None])), 2)
            return float(model.fc(hidden.flatten(1))[0, cls])

        phi = []
        for k in range(channels):
            others = [j for j in range(channels) if j != k]
            total = 0.0
            for size in range(channels):
                weight = math.factorial(size) * math.factorial(channels - size - 1) / math.factorial(channels)
                for coalition in itertools.combinations(others, size):
                    total += weight * (value(coalition + (k,)) - value(coalition))
            phi.append(total)
    return torch.tensor(phi)


def test_exact_shapley_equals_brute_force_enumeration():
    model = Tiny(6).eval()
    image = random_images(1, 8, seed=4)
    explanation = camlens.explain(model, image, layer="relu", methods=("shapley", "liftcam"))
    expected = brute_force_shapley(model, image, int(explanation.targets[0]))
    torch.testing.assert_close(explanation.weights["shapley"][0], expected.float(), rtol=1e-4, atol=1e-5)
    assert explanation.errors["shapley"].abs().max() == 0  # exact
    # the efficiency axiom: Shapley values add up to v(all) − v(none), like LIFT-CAM's
    torch.testing.assert_close(explanation.weights["shapley"].sum(), explanation.weights["liftcam"].sum(), rtol=1e-4, atol=1e-5)


def test_null_players_get_exactly_zero_and_leave_the_others_values_unchanged():
    model = Tiny(8).eval()
    with torch.no_grad():  # three maps that are zero everywhere: their conv gives −1 before the ReLU
        model.conv.weight[[1, 4, 6]] = 0
        model.conv.bias[[1, 4, 6]] = -1
    image = random_images(1, 8, seed=6)
    explanation = camlens.explain(model, image, layer="relu", methods=("shapley", "liftcam"),
                                  options={"shapley": {"exact_up_to": 5}})  # 5 non-null maps: exact
    expected = brute_force_shapley(model, image, int(explanation.targets[0]))  # all 2^8 coalitions
    weights = explanation.weights["shapley"][0]
    assert (weights[[1, 4, 6]] == 0).all() and (explanation.errors["shapley"] == 0).all()
    torch.testing.assert_close(weights, expected.float(), rtol=1e-4, atol=1e-5)
    # sampled among the 5 players only: still unbiased, the null players still exactly 0
    sampled = camlens.explain(model, image, layer="relu", methods="shapley",
                              options={"shapley": {"exact_up_to": 0, "pairs": 100, "seed": 1}})
    estimate, error = sampled.weights["shapley"][0], sampled.errors["shapley"][0]
    assert (estimate[[1, 4, 6]] == 0).all() and (error[[1, 4, 6]] == 0).all()
    assert ((estimate - expected.float()).abs() <= 4 * error + 1e-6).all()


def test_sampled_shapley_converges_within_its_reported_error():
    model = Tiny(10).eval()
    image = random_images(1, 8, seed=5)
    exact = camlens.explain(model, image, layer="relu", methods="shapley").weights["shapley"][0]
    sampled = camlens.explain(model, image, layer="relu", methods="shapley",
                              options={"shapley": {"exact_up_to": 0, "pairs": 200, "seed": 3}})
    estimate, error = sampled.weights["shapley"][0], sampled.errors["shapley"][0]
    assert (error > 0).all() and (error < 0.1 * exact.abs().max()).all()
    assert ((estimate - exact).abs() <= 4 * error + 1e-6).all(), ((estimate - exact).abs() / error)
    rough = camlens.explain(model, image, layer="relu", methods="shapley",
                            options={"shapley": {"exact_up_to": 0, "pairs": 8, "seed": 3}}).errors["shapley"][0]
    assert rough.mean() > error.mean()  # more samples, smaller error


def loop_scorecam(model, image, layer, cls):
    """Score-CAM written out channel by channel, as in the official code."""
    activations = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: activations.append(o.detach()))
    with torch.no_grad():
        model(image)
    handle.remove()
    maps = activations[0][0]
    weights = torch.zeros(maps.shape[0])
    for k in range(maps.shape[0]):
        upsampled = F.interpolate(maps[k][None, None], size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        if upsampled.max() == upsampled.min():
            continue
        mask = (upsampled - upsampled.min()) / (upsampled.max() - upsampled.min())
        with torch.no_grad():
            weights[k] = model(image * mask).softmax(dim=1)[0, cls]
    return weights


def test_scorecam_matches_the_channel_by_channel_loop_and_skips_constant_channels():
    model = Tiny(8).eval()
    with torch.no_grad():
        model.conv.weight[3] = 0
        model.conv.bias[3] = 0.5  # channel 3 is constant: no mask
    image = random_images(1, 8, seed=6)
    explanation = camlens.explain(model, image, layer="relu", methods="scorecam", batch_size=3)
    expected = loop_scorecam(model, image, "relu", int(explanation.targets[0]))
    torch.testing.assert_close(explanation.weights["scorecam"][0], expected, rtol=1e-5, atol=1e-6)
    assert explanation.weights["scorecam"][0, 3] == 0 and (expected[[0, 1, 2, 4]] > 0).all()
    variants = {v: camlens.explain(model, image, layer="relu", methods="scorecam", options={"scorecam": {"variant": v}})
                .weights["scorecam"][0] for v in ("baseline", "softmax")}
    blank = model(image * 0).softmax(dim=1)[0, int(explanation.targets[0])].detach()
    varying = torch.tensor([k for k in range(8) if k != 3])
    torch.testing.assert_close(variants["baseline"][varying], expected[varying] - blank)
    torch.testing.assert_close(variants["softmax"][varying], expected[varying].softmax(dim=0))


def test_scorecam_on_efficientnet_lite0_photo(lite0, lite0_batch):
    model, _ = lite0
    image = lite0_batch[:1]
    explanation = camlens.explain(model, image, layer="_blocks.15", methods=("scorecam", "scorecam_fast"))
    expected = loop_scorecam(model, image, "_blocks.15", 285)
    assert int(explanation.targets[0]) == 285
    torch.testing.assert_close(explanation.weights["scorecam"][0], expected, rtol=1e-4, atol=1e-5)
    fast = explanation.weights["scorecam_fast"][0]
    chosen = (fast != fast.mode().values) & (fast != 0)  # the exactly evaluated channels
    torch.testing.assert_close(fast[chosen], expected[chosen], rtol=1e-4, atol=1e-5)


class _MixingDepthwise(nn.Conv2d):
    """Looks like a depthwise convolution to the type checks, but its forward mixes channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + x.mean(dim=1, keepdim=True)


def test_ablationcam_checks_its_closed_form_and_falls_back_when_a_module_is_not_what_its_type_says():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), _MixingDepthwise(8, 8, 3, padding=1, groups=8),
                          nn.Conv2d(8, 5, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    with pytest.warns(RuntimeWarning, match="closed form does not reproduce"):
        check_ablation(model, random_images(1, 16), "1", torch.arange(8))
