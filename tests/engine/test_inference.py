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


class _ViewThenActivation(nn.Module):
    """An activation whose input is a view of a tensor read again afterwards: applied in place,
    it would overwrite that tensor through the view."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.conv, self.act, self.view = nn.Conv2d(3, 4, 3), nn.ReLU(), module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.act(self.view(h)).flatten(1).sum(1) + h.sum((1, 2, 3))


class _Flat(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], -1)


@pytest.mark.parametrize("view", [nn.Flatten(), nn.Identity(), nn.Dropout(0.5), _Flat()],
                         ids=["flatten", "identity", "dropout", "view"])
def test_an_activation_on_a_view_of_a_tensor_read_later_is_not_made_in_place(view):
    model = _ViewThenActivation(view).eval()
    images = random_images(2, size=8)
    with torch.inference_mode():
        torch.testing.assert_close(inference_copy(model)(images), model(images), rtol=1e-5, atol=1e-5)


class _Untraceable(nn.Module):
    """Control flow on a value, which torch.fx cannot trace, and a view after a convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        if h.mean() > 100:
            h = h * 2
        return h.view(h.size(0), -1).sum(1)


def test_a_model_fx_cannot_trace_is_copied_as_it_is_and_its_views_still_work():
    model = _Untraceable().eval()
    images = random_images(2, size=8)
    with torch.inference_mode():
        torch.testing.assert_close(inference_copy(model)(images), model(images))


class _InPlaceAddThenActivation(nn.Module):
    """``g += 1`` changes ``h`` (the same tensor), which is read again."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.act = nn.Conv2d(3, 4, 3), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        g = h
        g += 1
        return self.act(g).sum((1, 2, 3)) + h.sum((1, 2, 3))


def test_a_copy_that_torch_fx_traced_differently_is_caught_on_its_first_batch():
    """torch.fx traces ``g += 1`` as ``g + 1``: the traced copy would compute another function.
    The first batch compares it with a plain copy and keeps the plain one, saying so."""
    model = _InPlaceAddThenActivation().eval()
    images = random_images(2, size=8)
    copied = inference_copy(model)
    with torch.inference_mode():
        with pytest.warns(RuntimeWarning, match="differs from the model"):
            torch.testing.assert_close(copied(images), model(images), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(copied(images), model(images), rtol=1e-5, atol=1e-5)
