"""Every method against the independent float64 re-implementation in ``reference.py``, on real
pretrained models with real photos and on torchvision / timm architectures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import camlens

from reference import (
    GRADIENT_METHODS,
    WEIGHT_METHODS,
    assert_close,
    double,
    layer_map,
    split_gradients,
    upsample,
    weights,
)
from support import random_images

ALL_CAM_METHODS = GRADIENT_METHODS + ("cam",)


def check_against_reference(model, images, layer, features, head, methods=GRADIENT_METHODS, rtol=2e-4, **kwargs):
    explanation = camlens.explain(model, images, layer=layer, methods=methods, **kwargs)
    A, G, logits, classes = split_gradients(features, head, images, explanation.targets)
    assert explanation.targets.tolist() == logits.argmax(axis=1).tolist(), "target=None must explain the top-1 class"
    assert_close(explanation.activations, A, 1e-4, "activations")
    assert_close(explanation.gradients, G, rtol, "gradients")
    assert_close(explanation.scores, logits[np.arange(len(classes)), classes], 1e-4, "scores")
    for method in methods:
        if method == "cam":
            continue
        expected = layer_map(method, A, G)
        assert_close(explanation.layer_maps[method], expected, rtol, f"{method} layer map")
        assert_close(explanation.maps[method], upsample(expected, images.shape[-2:]), rtol, f"{method} map")
        if method in WEIGHT_METHODS:
            assert_close(explanation.weights[method], weights(method, A, G), rtol, f"{method} weights")
    return explanation


def test_every_method_matches_reference_on_efficientnet_lite0_photos(lite0, lite0_batch):
    model, _ = lite0
    m64 = double(model)
    features = lambda x: m64._head_act(m64._bn1(m64._conv_head(m64._blocks(m64._stem_act(m64._bn0(m64._conv_stem(x)))))))
    head = lambda a: m64._fc(F.adaptive_avg_pool2d(a, 1).flatten(1))
    explanation = check_against_reference(model, lite0_batch, "_head_act", features, head, methods=ALL_CAM_METHODS)
    assert explanation.targets[:2].tolist() == [285, 967]  # chelsea: Egyptian cat; coffee: espresso


def test_every_method_matches_reference_on_mobilenet_v2_imagenet_photos(mobilenet, imagenet_photos):
    model, preprocess = mobilenet
    images = torch.stack([preprocess(image) for image in imagenet_photos])
    m64 = double(model)
    head = lambda a: m64.classifier(F.adaptive_avg_pool2d(a, 1).flatten(1))
    check_against_reference(model, images, "features", m64.features, head, methods=ALL_CAM_METHODS)


@pytest.fixture(scope="module")
def resnet50():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.resnet50().eval()


@pytest.fixture(scope="module")
def vgg16():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.vgg16().eval()


def _resnet_trunk(m):
    return lambda x: m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))))


def test_every_method_matches_reference_on_torchvision_resnet50(resnet50):
    m64 = double(resnet50)
    head = lambda a: m64.fc(m64.avgpool(a).flatten(1))
    check_against_reference(resnet50, random_images(2), "layer4", _resnet_trunk(m64), head, methods=ALL_CAM_METHODS)


def test_reused_relu_module_explains_the_chosen_call(resnet50):
    """ResNet's Bottleneck calls one ``relu`` module three times. ``call=0`` must explain the first
    call (after bn1), with the gradient of everything that follows, skip connection included."""
    m64 = double(resnet50)
    block = m64.layer4[2]
    block_input = lambda x: m64.layer4[1](m64.layer4[0](m64.layer3(m64.layer2(m64.layer1(m64.maxpool(m64.relu(m64.bn1(m64.conv1(x)))))))))
    images = random_images(2, seed=1)
    with torch.no_grad():
        skip = block_input(images.double())
    features = lambda x: block.relu(block.bn1(block.conv1(block_input(x))))
    rest = lambda a: block.relu(block.bn3(block.conv3(block.relu(block.bn2(block.conv2(a))))) + skip)
    head = lambda a: m64.fc(m64.avgpool(rest(a)).flatten(1))
    check_against_reference(resnet50, images, "layer4.2.relu", features, head, call=0)
    # the default, the last call, is the block's output: the same as explaining layer4
    last = camlens.explain(resnet50, images, layer="layer4.2.relu", methods="gradcam")
    whole = camlens.explain(resnet50, images, layer="layer4", methods="gradcam")
    torch.testing.assert_close(last.maps["gradcam"], whole.maps["gradcam"])


def test_every_method_matches_reference_on_torchvision_vgg16_relu5_3(vgg16):
    m64 = double(vgg16)
    head = lambda a: m64.classifier(m64.avgpool(m64.features[30:](a)).flatten(1))
    check_against_reference(vgg16, random_images(2), "features.29", m64.features[:30], head)


def test_layer_before_an_inplace_relu_records_the_pre_activation(vgg16):
    """features.28 is a conv followed by ReLU(inplace=True): the recorded activations must be the
    conv's output, negative values included, not what the in-place ReLU left in memory."""
    m64 = double(vgg16)
    head = lambda a: m64.classifier(m64.avgpool(m64.features[29:](a.clone())).flatten(1))
    # Signed activations: XGrad-CAM divides by Σ A, which can be near 0 here, so float32 rounding is
    # amplified; 1e-3 of the map's scale still catches any recording of the post-ReLU values.
    explanation = check_against_reference(vgg16, random_images(1), "features.28", m64.features[:29], head, rtol=1e-3)
    assert (explanation.activations < 0).any()


def test_every_method_matches_reference_on_timm_models():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    for name, layer in (("resnet18", "layer4"), ("efficientnet_b0", "bn2")):
        model = timm.create_model(name, pretrained=False).eval()
        m64 = double(model)
        check_against_reference(model, random_images(2, seed=3), layer, m64.forward_features, m64.forward_head)
