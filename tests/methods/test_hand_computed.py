"""Maps worked out by hand on tiny networks with fixed weights (in the spirit of captum's
``BasicModel_ConvNet_One_Conv`` tests). The networks and their activations and gradients are derived
in ``handbuilt.py``; every expected number below is derived in the comments."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import camlens

from handbuilt import LinearHead, QuadraticHead, X

EXPECTED = {
    # w = mean(g) = (−5/4, 10/4); −1.25 A¹ + 2.5 A² = [[3.75, 0], [−3.75, −5]]
    "gradcam": ([[3.75, 0.0], [0.0, 0.0]], [-1.25, 2.5]),
    # negated: 1.25 A¹ − 2.5 A² = [[−3.75, 0], [3.75, 5]]
    "gradcam_counterfactual": ([[0.0, 0.0], [3.75, 5.0]], [1.25, -2.5]),
    # w¹ = Σ A¹g¹ / Σ A¹ = (0 − 2 − 6 − 8)/10 = −1.6; w² = Σ A²g² / Σ A² = (2 + 2)/3 = 4/3
    # −1.6 A¹ + 4/3 A² = [[16/15, −28/15], [−4.8, −6.4]]
    "xgradcam": ([[16 / 15, 0.0], [0.0, 0.0]], [-1.6, 4 / 3]),
    # channel 1: every g¹ ≤ 0, so w¹ = 0 (and α is 0 where 2g² + 10g³ = 0, at g = 0)
    # channel 2: α = g²/(2g² + 3g³) = 1/(2 + 3g) → w² = 1/5 + 2/8 + 3/11 + 4/14 = 1553/1540
    "gradcampp": ([[2 * 1553 / 1540, 1553 / 1540], [0.0, 0.0]], [0.0, 1553 / 1540]),
    # Σ_k ReLU(g^k) A^k: channel 1 gives 0, channel 2 gives g²A² = [[2, 2], [0, 0]]
    "layercam": ([[2.0, 2.0], [0.0, 0.0]], None),
    # Σ_k g^k A^k = [[0, −2], [−6, −8]] + [[2, 2], [0, 0]] = [[2, 0], [−6, −8]]
    "hirescam": ([[2.0, 0.0], [0.0, 0.0]], None),
}


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_hand_computed_map_and_weights(method):
    explanation = camlens.explain(QuadraticHead(), X, layer="relu", methods=method, target=0)
    expected_map, expected_weights = EXPECTED[method]
    torch.testing.assert_close(explanation.layer_maps[method][0], torch.tensor(expected_map))
    torch.testing.assert_close(explanation.maps[method][0], torch.tensor(expected_map))  # 2×2 input: no resampling
    if expected_weights is None:
        assert method not in explanation.weights
    else:
        torch.testing.assert_close(explanation.weights[method][0], torch.tensor(expected_weights))
    assert explanation.scores.item() == -16.0


def test_cam_and_gradcam_on_gap_linear_head_by_hand():
    # class 1: CAM weights are W[1] = (0.5, 2): 0.5 A¹ + 2 A² = [[4.5, 3], [1.5, 2]];
    # Grad-CAM's are W[1]/Z = (0.125, 0.5): a quarter of that map.
    explanation = camlens.explain(LinearHead(), X, layer="features.relu", methods=("cam", "gradcam"), target=1)
    cam = torch.tensor([[4.5, 3.0], [1.5, 2.0]])
    torch.testing.assert_close(explanation.layer_maps["cam"][0], cam)
    torch.testing.assert_close(explanation.layer_maps["gradcam"][0], cam / 4)
    torch.testing.assert_close(explanation.weights["cam"][0], torch.tensor([0.5, 2.0]))
    # score: W[1]·GAP(A) + b = 0.5·2.5 + 2·0.75 + 1 = 3.75
    assert explanation.scores.item() == pytest.approx(3.75)


def test_cam_refuses_a_head_that_is_not_gap_linear():
    with pytest.raises(ValueError, match="cam needs"):
        camlens.explain(QuadraticHead(), X, layer="relu", methods="cam", target=0)


RELU_CALLS = {
    "nn.ReLU": lambda h: nn.ReLU()(h),
    "nn.ReLU(inplace)": lambda h: nn.ReLU(inplace=True)(h),
    "F.relu": F.relu,
    "F.relu(inplace)": lambda h: F.relu(h, inplace=True),
    "torch.relu": torch.relu,
    "Tensor.relu": lambda h: h.relu(),
    "Tensor.relu_": lambda h: h.relu_(),
    "nn.ReLU6": lambda h: nn.ReLU6()(h),
    "nn.ReLU6(inplace)": lambda h: nn.ReLU6(inplace=True)(h),
    "F.relu6": F.relu6,
}


class OneReLU(nn.Module):
    """x = (1, −2, 3, 7) → identity 1×1 conv → the ReLU under test → y = v · r, v = (2, 5, −1, 4).
    ReLU: r = (1, 0, 3, 7); true gradient v·[x > 0] = (2, 0, −1, 4); guided also drops the
    negative incoming gradient at position 2: (2, 0, 0, 4). ReLU6 passes only 0 < x < 6, so
    position 3 (x = 7) is 0 as well."""

    def __init__(self, relu):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        nn.init.ones_(self.conv.weight)
        self.relu_call = relu

    def forward(self, x):
        r = self.relu_call(self.conv(x))
        return (r.flatten(1) * torch.tensor([2.0, 5.0, -1.0, 4.0])).sum(dim=1, keepdim=True)


@pytest.mark.parametrize("call", sorted(RELU_CALLS))
def test_guided_backprop_by_hand_for_every_relu_form(call):
    x = torch.tensor([1.0, -2.0, 3.0, 7.0]).view(1, 1, 1, 4)
    explanation = camlens.explain(OneReLU(RELU_CALLS[call]), x, layer="conv", methods=("guided_backprop", "gradcam"), target=0)
    expected = [2.0, 0.0, 0.0, 0.0 if "6" in call else 4.0]
    torch.testing.assert_close(explanation.input_maps["guided_backprop"].flatten(), torch.tensor(expected))
    # the ordinary gradients at the layer keep the negative entry: Grad-CAM is not guided
    true_gradient = [2.0, 0.0, -1.0, 0.0 if "6" in call else 4.0]
    torch.testing.assert_close(explanation.gradients.flatten(), torch.tensor(true_gradient))
