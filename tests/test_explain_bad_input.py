"""Every kind of bad input gets a clear ValueError/TypeError naming the problem."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camlens

from support import random_images


@pytest.fixture(scope="module")
def resnet():
    torchvision = pytest.importorskip("torchvision")
    return torchvision.models.resnet18().eval()


@pytest.fixture(scope="module")
def images():
    return random_images(2, 64)


def test_unknown_layer_lists_close_matches_and_candidates(resnet, images):
    with pytest.raises(ValueError) as error:
        camlens.explain(resnet, images, layer="layr4")
    message = str(error.value)
    assert "'layr4' not found" in message and "Did you mean 'layer4'" in message
    assert "Top-level layers: conv1, bn1, relu, maxpool, layer1, layer2, layer3, layer4, avgpool, fc" in message


def test_layer_module_from_another_model(resnet, images):
    with pytest.raises(ValueError, match="not part of the model"):
        camlens.explain(resnet, images, layer=nn.Conv2d(3, 3, 1))


def test_layer_without_spatial_output(resnet, images):
    with pytest.raises(ValueError, match=r"'fc' \(Linear\) has output shape \(2, 1000\), not a spatial"):
        camlens.explain(resnet, images, layer="fc")


def test_layer_never_called(images):
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.spare = nn.Conv2d(4, 4, 1)
            self.fc = nn.Linear(4, 5)

        def forward(self, x):
            return self.fc(self.conv(x).mean(dim=(2, 3)))

    with pytest.raises(ValueError, match="'spare' was not called during the forward pass"):
        camlens.explain(Unused(), images, layer="spare")


def test_call_index_out_of_range(resnet, images):
    with pytest.raises(ValueError, match=r"called 2 time\(s\) in one forward pass; call=3 is out of range"):
        camlens.explain(resnet, images, layer="layer4.0.relu", call=3)


@pytest.mark.parametrize(
    "bad,error,pattern",
    [
        (torch.randn(3, 64, 64), ValueError, r"\(B, C, H, W\); got \(3, 64, 64\).*unsqueeze\(0\)"),
        (torch.randn(64, 64), ValueError, r"\(B, C, H, W\); got \(64, 64\)"),
        (torch.randn(0, 3, 64, 64), ValueError, "empty batch"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError, "floating-point"),
        ([[1.0]], TypeError, "must be a torch.Tensor"),
    ],
)
def test_wrong_images(resnet, bad, error, pattern):
    with pytest.raises(error, match=pattern):
        camlens.explain(resnet, bad, layer="layer4")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_images_name_the_bad_image(resnet, images, value):
    bad = images.clone()
    bad[1, 0, 3, 3] = value
    with pytest.raises(ValueError, match=r"NaN or infinite values \(batch indices \[1\]\)"):
        camlens.explain(resnet, bad, layer="layer4")


@pytest.mark.parametrize("target", [1000, -1, [3, 1000]])
def test_class_index_out_of_range(resnet, images, target):
    with pytest.raises(ValueError, match=r"out of range: the model has 1000 classes \(0..999\)"):
        camlens.explain(resnet, images, layer="layer4", target=target)


@pytest.mark.parametrize("target", [[1, 2, 3], [1], []])
def test_target_list_of_the_wrong_length_is_never_truncated(resnet, images, target):
    with pytest.raises(ValueError, match=f"got {len(target)} target classes for a batch of 2 images"):
        camlens.explain(resnet, images, layer="layer4", target=target)


def test_unknown_method_suggests_the_close_name(resnet, images):
    with pytest.raises(ValueError, match=r"unknown method 'gradcamm'. Did you mean 'gradcam'.*Available: cam, gradcam"):
        camlens.explain(resnet, images, layer="layer4", methods=("gradcamm",))


def test_bad_targets(resnet, images):
    with pytest.raises(ValueError, match="unknown target 'top'"):
        camlens.explain(resnet, images, layer="layer4", target="top")
    with pytest.raises(TypeError, match="integers"):
        camlens.explain(resnet, images, layer="layer4", target=torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"one score per image, shape \(2,\); got \(2, 1000\)"):
        camlens.explain(resnet, images, layer="layer4", target=lambda out: out)
    with pytest.raises(ValueError, match="top-1001 asked of a model with 1000 classes"):
        camlens.explain(resnet, images, layer="layer4", target="top1001")


class TwoHeads(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        torch.manual_seed(0)  # every variant has the same weights, so their explanations compare
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 4)
        self.kind = kind

    def forward(self, x):
        logits = self.fc(self.conv(x).relu().mean(dim=(2, 3)))
        if self.kind == "tuple":
            return logits, logits * 2
        if self.kind == "dict":
            return {"main": logits, "aux": logits * 2}
        return {"logits": logits, "aux": logits * 2}


def test_models_returning_tuples_and_dicts(images):
    with pytest.raises(TypeError, match=r"returned \(tensor\(2, 4\), tensor\(2, 4\)\), not a tensor; pass output="):
        camlens.explain(TwoHeads("tuple"), images, layer="conv")
    with pytest.raises(TypeError, match=r"returned \{'main': tensor\(2, 4\), 'aux': tensor\(2, 4\)\}"):
        camlens.explain(TwoHeads("dict"), images, layer="conv")
    with pytest.raises(ValueError, match="output='nope' does not select anything"):
        camlens.explain(TwoHeads("dict"), images, layer="conv", output="nope")
    first = camlens.explain(TwoHeads("tuple"), images, layer="conv", output=0, methods="gradcam", target=1)
    second = camlens.explain(TwoHeads("tuple"), images, layer="conv", output=1, methods="gradcam", target=1)
    torch.testing.assert_close(second.weights["gradcam"], 2 * first.weights["gradcam"])  # the second head is doubled
    keyed = camlens.explain(TwoHeads("dict"), images, layer="conv", output="aux", methods="gradcam", target=1)
    by_callable = camlens.explain(TwoHeads("dict"), images, layer="conv", output=lambda o: o["aux"], methods="gradcam", target=1)
    conventional = camlens.explain(TwoHeads("logits"), images, layer="conv", methods="gradcam", target=1)
    torch.testing.assert_close(keyed.weights["gradcam"], second.weights["gradcam"])
    torch.testing.assert_close(by_callable.weights["gradcam"], second.weights["gradcam"])
    torch.testing.assert_close(conventional.weights["gradcam"], first.weights["gradcam"])  # read at "logits"
