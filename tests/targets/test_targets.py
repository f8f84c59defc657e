"""What is explained: top-k, per-image classes, score kinds, regions of dense outputs, callables."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camlens

from handbuilt import LinearHead, X

METHODS = ("gradcam", "gradcampp", "xgradcam", "layercam", "hirescam")


def test_top5_in_one_call_equals_five_single_class_calls(lite0, lite0_batch):
    model, _ = lite0
    images = lite0_batch[:2]
    top5 = camlens.explain(model, images, layer="_head_act", methods=METHODS, target="top5")
    logits = model(images).detach()
    assert top5.image_index.tolist() == [0] * 5 + [1] * 5
    assert top5.targets.view(2, 5).tolist() == logits.topk(5).indices.tolist()
    torch.testing.assert_close(top5.scores.view(2, 5), logits.topk(5).values, rtol=1e-5, atol=1e-5)
    for rank in range(5):
        classes = top5.targets.view(2, 5)[:, rank]
        single = camlens.explain(model, images, layer="_head_act", methods=METHODS, target=classes)
        for method in METHODS:
            torch.testing.assert_close(top5.maps[method].view(2, 5, 224, 224)[:, rank], single.maps[method])


def test_none_is_top1_and_per_image_classes_are_respected(lite0, lite0_batch):
    model, _ = lite0
    default = camlens.explain(model, lite0_batch, layer="_head_act")
    assert default.targets.tolist() == model(lite0_batch).argmax(dim=1).tolist()
    mixed = camlens.explain(model, lite0_batch[:2], layer="_head_act", target=[967, 285])  # each photo's other class
    alone = camlens.explain(model, lite0_batch[:1], layer="_head_act", target=967)
    torch.testing.assert_close(mixed.maps["gradcam"][:1], alone.maps["gradcam"])
    assert not torch.allclose(mixed.maps["gradcam"][0], default.maps["gradcam"][0])


def test_softmax_score_gradient_has_its_closed_form():
    # Two classes: p₁ = σ(y₁ − y₀), so ∂p₁/∂A^k_ij = p₁(1 − p₁)(W₁ₖ − W₀ₖ)/Z with W = [[1, −1], [0.5, 2]], Z = 4.
    model = LinearHead()
    explanation = camlens.explain(model, X, layer="features.relu", target=camlens.ClassTarget(1, score="softmax"))
    p1 = torch.softmax(model(X), dim=1)[0, 1].detach()
    expected = p1 * (1 - p1) * torch.tensor([-0.5, 3.0]) / 4
    torch.testing.assert_close(explanation.weights["gradcam"][0], expected)
    torch.testing.assert_close(explanation.scores[0], p1)
    log_softmax = camlens.explain(model, X, layer="features.relu", target=camlens.ClassTarget(1, score="log_softmax"))
    torch.testing.assert_close(log_softmax.weights["gradcam"][0], (1 - p1) * torch.tensor([-0.5, 3.0]) / 4)


class DenseHead(nn.Module):
    """Layer: 1×1 conv 1→2 (weights 1, −1; no bias) and ReLU; head: 1×1 conv 2→3 with weights V."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.relu = nn.ReLU()
        self.classifier = nn.Conv2d(2, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.classifier.weight.copy_(torch.tensor([[1.0, 0.0], [2.0, -3.0], [0.0, 1.0]]).view(3, 2, 1, 1))

    def forward(self, x):
        return self.classifier(self.relu(self.conv(x)))


def test_segmentation_region_target_by_hand():
    # score = Σ_ij mask_ij · (V_c · A_ij + b_c), so g^k_ij = V_ck · mask_ij and Grad-CAM's
    # w_k = V_ck · mean(mask). Class 1 (V = (2, −3)) on a mask covering 3 of 4 pixels: w = (1.5, −2.25).
    x = torch.tensor([[1.0, -2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    mask = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    explanation = camlens.explain(DenseHead(), x, layer="relu", methods="gradcam", target=camlens.SegmentationRegion(1, mask))
    torch.testing.assert_close(explanation.weights["gradcam"][0], torch.tensor([1.5, -2.25]))
    # A¹ = [[1, 0], [3, 4]], A² = [[0, 2], [0, 0]]; map = ReLU(1.5 A¹ − 2.25 A²) = [[1.5, 0], [4.5, 6]]
    torch.testing.assert_close(explanation.layer_maps["gradcam"][0], torch.tensor([[1.5, 0.0], [4.5, 6.0]]))
    assert explanation.targets.tolist() == [1]


def test_callable_target_is_linear_in_its_scores(lite0, lite0_batch):
    model, _ = lite0
    both = camlens.explain(model, lite0_batch, layer="_head_act", target=lambda logits: logits[:, 285] + logits[:, 967])
    cat = camlens.explain(model, lite0_batch, layer="_head_act", target=285)
    espresso = camlens.explain(model, lite0_batch, layer="_head_act", target=967)
    torch.testing.assert_close(both.weights["gradcam"], cat.weights["gradcam"] + espresso.weights["gradcam"])
    assert both.targets.tolist() == [-1] * 4


def test_top_k_is_parsed_in_one_place_for_python_and_the_cli():
    from camlens.data import Preprocessing
    from camlens.models import LoadedModel
    from camlens.targets import TopK, as_target

    loaded = LoadedModel("abc", torch.nn.Identity(), Preprocessing(8, 8, (0.5,) * 3, (0.5,) * 3), ("a", "b", "c"))
    class_target = loaded.class_target
    for text in ("top3", "TOP3", "Top3"):
        assert as_target(text).k == 3 and class_target([text]).k == 3
    assert isinstance(as_target("top1"), TopK)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        as_target("top0")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        class_target(["top0"])
    with pytest.raises(ValueError, match="cannot be combined"):
        class_target(["top2", "a"])
    with pytest.raises(ValueError, match="unknown target 'topmost'"):
        as_target("topmost")
