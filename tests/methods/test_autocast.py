"""explain(..., autocast=...): the forward and backward in bfloat16 or float16, the maps float32."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torchvision.models import resnet18

import camlens

GRADIENT = ("gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "guided_gradcam")


def test_bfloat16_autocast_on_the_cpu_gives_float32_maps_close_to_float32():
    torch.manual_seed(0)
    model = resnet18(num_classes=10).eval()
    images = torch.randn(2, 3, 64, 64)
    full = camlens.explain(model, images, layer="layer4", methods=GRADIENT, target="top2")
    low = camlens.explain(model, images, layer="layer4", methods=GRADIENT, target="top2", autocast=torch.bfloat16)
    assert torch.equal(low.targets, full.targets)
    for method in GRADIENT:
        assert low.maps[method].dtype == torch.float32
        a, b = camlens.normalize(full.maps[method]).flatten(1), camlens.normalize(low.maps[method]).flatten(1)
        # bfloat16 keeps 8 bits of mantissa: the maps agree in shape, not to float32's digits
        assert F.cosine_similarity(a, b).min() > 0.95, method
        assert not torch.equal(a, b)  # it did run in low precision


def test_autocast_refuses_other_dtypes_and_the_perturbation_methods():
    model = resnet18(num_classes=10).eval()
    images = torch.randn(1, 3, 64, 64)
    with pytest.raises(ValueError, match="bfloat16 or torch.float16"):
        camlens.explain(model, images, layer="layer4", autocast=torch.float64)
    with pytest.raises(ValueError, match="scorecam evaluate the network after the layer"):
        camlens.explain(model, images, layer="layer4", methods=["gradcam", "scorecam"], autocast=torch.bfloat16)
