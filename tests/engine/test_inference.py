"""The metrics' fast copy of a model computes the model's function and leaves the model alone."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from camlens.engine.inference import inference_copy

from support import random_images


class SharedActivation(nn.Module):
    """A ReLU whose input is also read by a residual: making it in-place would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.relu = nn.ReLU()
        self.head = nn.Linear(3, 4)

    def forward(self, x):
        y = self.bn(self.conv(x))
        return self.head((self.relu(y) + y).mean(dim=(2, 3)))


class Untraceable(nn.Module):
    """Data-dependent control flow: ``torch.fx`` cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x):
        y = self.conv(x)
        return y.mean(dim=(2, 3)) if y.sum() > 0 else -y.mean(dim=(2, 3))


def _with_running_statistics(model: nn.Module) -> nn.Module:
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):  # not the identity: the folding has something to fold
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model


@pytest.mark.parametrize("build", [SharedActivation, Untraceable, lambda: __import__("torchvision").models.resnet18()])
def test_the_copy_computes_the_models_function_and_the_model_is_untouched(build):
    torch.manual_seed(0)
    model = _with_running_statistics(build()).train()
    before = copy.deepcopy(model.state_dict())
    flags = [(m, m.training, getattr(m, "inplace", None)) for m in model.modules()]
    images = random_images(4, size=64)
    fast = inference_copy(model)
    with torch.inference_mode():
        expected = model.eval()(images)
        model.train()
        got = fast(images.clone())
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [(m, m.training, getattr(m, "inplace", None)) for m in model.modules()] == flags


def test_the_copy_does_not_overwrite_its_input():
    model = nn.Sequential(nn.ReLU(), nn.Conv2d(3, 3, 1), nn.ReLU()).eval()
    images = random_images(2, size=8)
    kept = images.clone()
    with torch.inference_mode():
        inference_copy(model)(images)
    assert torch.equal(images, kept)  # the first ReLU reads the caller's tensor: not in place


def test_efficientnet_lite0_copy_matches_on_real_weights(lite0, lite0_batch):
    model, _ = lite0
    with torch.inference_mode():
        expected, got = model(lite0_batch), inference_copy(model)(lite0_batch)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert (got.argmax(1) == expected.argmax(1)).all()
