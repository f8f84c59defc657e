"""Agreement with captum, an independent implementation: LayerGradCam and GuidedGradCam."""

from __future__ import annotations

import pytest
import torch

import camlens

from support import random_images

captum_attr = pytest.importorskip("captum.attr")


def test_gradcam_matches_captum_layergradcam_on_efficientnet_lite0(lite0, lite0_batch):
    model, _ = lite0
    ours = camlens.explain(model, lite0_batch, layer="_head_act", methods="gradcam")
    theirs = captum_attr.LayerGradCam(model, model._head_act).attribute(
        lite0_batch, target=ours.targets.tolist(), relu_attributions=True
    )
    torch.testing.assert_close(ours.layer_maps["gradcam"], theirs[:, 0], rtol=1e-4, atol=1e-6)


def test_gradcam_matches_captum_on_mobilenet_v2(mobilenet, imagenet_photos):
    model, preprocess = mobilenet
    images = torch.stack([preprocess(image) for image in imagenet_photos])
    ours = camlens.explain(model, images, layer="features.18", methods="gradcam")
    theirs = captum_attr.LayerGradCam(model, model.features[18]).attribute(
        images, target=ours.targets.tolist(), relu_attributions=True
    )
    torch.testing.assert_close(ours.layer_maps["gradcam"], theirs[:, 0], rtol=1e-4, atol=1e-6)


def test_guided_gradcam_matches_captum_on_vgg16():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.vgg16().eval()
    images = random_images(2, seed=5)
    ours = camlens.explain(model, images, layer="features.29", methods=("gradcam", "guided_backprop", "guided_gradcam"))
    targets = ours.targets.tolist()
    guided = captum_attr.GuidedBackprop(model).attribute(images, target=targets)
    guided_gradcam = captum_attr.GuidedGradCam(model, model.features[29]).attribute(
        images, target=targets, interpolate_mode="bilinear"
    )
    scale = guided.abs().max()
    torch.testing.assert_close(ours.input_maps["guided_backprop"] / scale, guided / scale, rtol=1e-4, atol=1e-5)
    scale = guided_gradcam.abs().max()
    torch.testing.assert_close(ours.input_maps["guided_gradcam"] / scale, guided_gradcam / scale, rtol=1e-4, atol=1e-5)
    assert scale > 0
