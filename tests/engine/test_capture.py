"""The capture engine: several layers at once, one forward and one backward for all methods,
results on the input's device, normalization kept separate."""

from __future__ import annotations

import pytest
import torch

import camlens
from camlens.engine.capture import record_forward

from reference import GRADIENT_METHODS


@pytest.fixture(scope="module")
def resnet():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


def test_several_layers_recorded_in_one_forward_get_their_own_gradients(resnet):
    images = torch.randn(2, 3, 64, 64)
    layers = {"layer3": resnet.layer3, "layer4.0.conv1": resnet.layer4[0].conv1, "layer4": resnet.layer4}
    forward = record_forward(resnet, images, layers)
    activations = [forward.activations(name) for name in layers]
    assert activations[0].is_leaf and not activations[2].is_leaf  # autograd starts at the first layer
    score = forward.output.gather(1, forward.output.argmax(1, keepdim=True)).sum()
    gradients = torch.autograd.grad(score, activations)
    for name, gradient in zip(layers, gradients):
        alone = camlens.explain(resnet, images, layer=name, methods="gradcam")
        torch.testing.assert_close(gradient, alone.gradients, rtol=1e-4, atol=1e-7)


def test_all_methods_share_one_forward_and_one_backward(resnet):
    forwards, backwards = [], []
    resnet.register_forward_hook(lambda *args: forwards.append(1))
    handle = resnet.fc.register_full_backward_hook(lambda *args: backwards.append(1))
    try:
        camlens.explain(resnet, torch.randn(3, 3, 64, 64), layer="layer4", methods=GRADIENT_METHODS)
        assert (len(forwards), len(backwards)) == (1, 1)
        forwards.clear(), backwards.clear()
        # Guided methods add one backward to the input over the same forward pass
        camlens.explain(resnet, torch.randn(3, 3, 64, 64), layer="layer4", methods=GRADIENT_METHODS + ("guided_gradcam",))
        assert (len(forwards), len(backwards)) == (1, 2)
        forwards.clear(), backwards.clear()
        # top-3: one forward, one backward per class rank
        camlens.explain(resnet, torch.randn(3, 3, 64, 64), layer="layer4", methods=GRADIENT_METHODS, target="top3")
        assert (len(forwards), len(backwards)) == (1, 3)
    finally:
        handle.remove()
        resnet._forward_hooks.clear()


def test_normalize_is_per_map_min_max_and_separate():
    maps = torch.tensor([[[1.0, 3.0], [2.0, 5.0]], [[4.0, 4.0], [4.0, 4.0]]])
    normalized = camlens.normalize(maps)
    torch.testing.assert_close(normalized[0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]))
    assert (normalized[1] == 0).all()  # a constant map highlights nothing
    assert maps[0, 1, 1] == 5.0  # the input is left raw


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tensors_stay_on_the_input_device(resnet):
    model = resnet.cuda()
    try:
        explanation = camlens.explain(model, torch.randn(2, 3, 64, 64, device="cuda"), layer="layer4",
                                      methods=GRADIENT_METHODS + ("cam", "guided_gradcam"), target="top2")
    finally:
        resnet.cpu()
    tensors = [*explanation.maps.values(), *explanation.layer_maps.values(), *explanation.weights.values(),
               *explanation.input_maps.values(), explanation.scores, explanation.targets, explanation.image_index]
    assert all(t.device.type == "cuda" for t in tensors)
