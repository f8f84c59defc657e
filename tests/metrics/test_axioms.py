"""XGrad-CAM's axioms and the Shapley error, on heads where the answer is known in closed form."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camlens
from camlens.metrics import axioms

from support import random_images


def gap_linear(bias: bool) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4, bias=bias))
    if bias:
        model[4].bias.data = torch.tensor([0.7, -1.3, 2.0, 0.4])
    return model.eval()


def measured(model: nn.Module, images: torch.Tensor, method: str):
    explanation = camlens.explain(model, images, layer="1", methods=(method, "ablationcam"))
    weights, activations = explanation.weights[method], explanation.activations[explanation.image_index]
    drops = axioms.removal_drops(explanation)
    return explanation, (axioms.conservation_error(weights, activations, explanation.scores),
                         axioms.sensitivity_error(weights, activations, explanation.scores, drops),
                         axioms.sensitivity_correlation(weights, activations, drops))


@pytest.mark.parametrize("method", ["gradcam", "xgradcam"])
def test_gap_linear_without_bias_satisfies_both_axioms(method):
    """S_c = Σ_k W_ck mean(A^k); both methods give w_k = W_ck / Z, so Σ M = S_c and each map's
    contribution is exactly its removal drop."""
    _, (conservation, sensitivity, correlation) = measured(gap_linear(bias=False), random_images(3, 12), method)
    assert conservation.abs().max() < 1e-5
    assert sensitivity.abs().max() < 1e-5
    torch.testing.assert_close(correlation, torch.ones(3))


@pytest.mark.parametrize("method", ["gradcam", "xgradcam"])
def test_with_a_bias_the_conservation_error_is_the_bias_over_the_score(method):
    model = gap_linear(bias=True)
    explanation, (conservation, sensitivity, _) = measured(model, random_images(3, 12), method)
    bias = model[4].bias[explanation.targets].detach()
    torch.testing.assert_close(conservation, bias.abs() / explanation.scores.abs())
    assert sensitivity.abs().max() < 1e-5  # removing one map does not remove the bias


def test_a_nonlinear_head_breaks_the_axioms_for_gradcam_and_the_errors_say_so():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 5, 1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(5 * 5 * 5, 3)).eval()
    _, (conservation, sensitivity, _) = measured(model, random_images(2, 12), "gradcam")
    assert conservation.min() > 1e-3 and sensitivity.min() > 1e-4


def test_removal_drops_need_ablationcam():
    explanation = camlens.explain(gap_linear(bias=False), random_images(1, 12), layer="1", methods="gradcam")
    with pytest.raises(ValueError, match="ablationcam"):
        axioms.removal_drops(explanation)


def test_shapley_distance_and_correlation_by_hand():
    reference = torch.tensor([[3.0, -1.0, 0.5, 2.0]])
    assert float(axioms.shapley_distance(2 * reference, reference)[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(axioms.shapley_distance(-reference, reference)[0]) == pytest.approx(2.0)
    assert float(axioms.shapley_correlation(reference ** 3, reference)[0]) == pytest.approx(1.0)
    assert float(axioms.shapley_correlation(-reference, reference)[0]) == pytest.approx(-1.0)
    orthogonal = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert float(axioms.shapley_distance(*orthogonal)[0]) == pytest.approx(2 ** 0.5)
