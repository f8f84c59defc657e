"""Identities from the papers, on real GAP → linear heads, in float64 so that they hold tightly."""

from __future__ import annotations

import copy

import pytest
import torch

import camlens

from support import random_images


def _identities(model, images, layer):
    model = copy.deepcopy(model).double()
    explanation = camlens.explain(model, images.double(), layer=layer, methods=("cam", "gradcam", "xgradcam", "hirescam"), target="top3")
    h, w = explanation.activations.shape[-2:]
    # Grad-CAM = CAM / Z: on GAP → linear the gradient is W[c, k]/Z at every position
    torch.testing.assert_close(explanation.weights["gradcam"] * (h * w), explanation.weights["cam"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(explanation.layer_maps["gradcam"] * (h * w), explanation.layer_maps["cam"], rtol=1e-10, atol=1e-12)
    # XGrad-CAM = Grad-CAM: spatially constant gradients make the activation weighting irrelevant
    # (channels with Σ A = 0 get weight 0 from XGrad-CAM, and contribute nothing to either map)
    torch.testing.assert_close(explanation.layer_maps["xgradcam"], explanation.layer_maps["gradcam"], rtol=1e-9, atol=1e-12)
    # HiResCAM = Grad-CAM on such heads too (Draelos & Carin's Eq. 6)
    torch.testing.assert_close(explanation.layer_maps["hirescam"], explanation.layer_maps["gradcam"], rtol=1e-9, atol=1e-12)
    # and the three maps differ from zero: the identities are not vacuous
    assert explanation.layer_maps["gradcam"].amax(dim=(1, 2)).min() > 0


def test_gradcam_equals_cam_and_xgradcam_on_efficientnet_lite0(lite0, lite0_batch):
    _identities(lite0[0], lite0_batch, "_head_act")


def test_gradcam_equals_cam_and_xgradcam_on_resnet50():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    _identities(torchvision.models.resnet50().eval(), random_images(2), "layer4")


def test_counterfactual_is_gradcam_of_the_negated_score(lite0, lite0_batch):
    model, _ = lite0
    by_method = camlens.explain(model, lite0_batch, layer="_head_act", methods="gradcam_counterfactual", target=285)
    by_target = camlens.explain(model, lite0_batch, layer="_head_act", methods="gradcam", target=camlens.Counterfactual(285))
    torch.testing.assert_close(by_method.weights["gradcam_counterfactual"], by_target.weights["gradcam"])
    torch.testing.assert_close(by_method.maps["gradcam_counterfactual"], by_target.maps["gradcam"])
    assert by_method.maps["gradcam_counterfactual"].sum() > 0
