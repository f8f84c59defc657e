"""Faithfulness metrics on models whose answer is known by hand, and on EfficientNet-Lite0."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from camlens.metrics import faithfulness as fm


class PixelSum(torch.nn.Module):
    """Logit of class 0 = Σ w ⊙ x over the pixels, class 1 = 0: every metric is computable by hand."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x * self.weight).sum(dim=(1, 2, 3))
        return torch.stack([score, torch.zeros_like(score)], dim=1)


def region(size: int = 16) -> torch.Tensor:
    mask = torch.zeros(size, size)
    mask[4:10, 3:12] = 1
    return mask


def test_a_map_that_is_one_exactly_on_the_evidence_drops_nothing_and_its_complement_everything():
    weight = region()
    model = PixelSum(weight)
    images = torch.rand(2, 3, 16, 16) + 0.5
    maps = weight.expand(2, 16, 16)
    classes = torch.zeros(2, dtype=torch.long)
    scores = fm.masked_scores(model, images, maps, classes, kind="logit")
    torch.testing.assert_close(scores["O"], scores["Y"])
    torch.testing.assert_close(scores["D"], torch.zeros(2))
    assert fm.average_drop(scores["Y"], scores["O"]).abs().max() == 0
    assert fm.increase_in_confidence(scores["Y"], scores["O"]).sum() == 0
    torch.testing.assert_close(fm.average_drop_in_deletion(scores["Y"], scores["D"]), torch.ones(2))


def test_masking_metrics_by_hand():
    Y, O, D = torch.tensor([0.8, 0.5, 0.2]), torch.tensor([0.4, 0.6, 0.2]), torch.tensor([0.2, 0.5, 0.3])
    torch.testing.assert_close(fm.average_drop(Y, O), torch.tensor([0.5, 0.0, 0.0]))
    torch.testing.assert_close(fm.increase_in_confidence(Y, O), torch.tensor([0.0, 1.0, 0.0]))
    torch.testing.assert_close(fm.average_drop_in_deletion(Y, D), torch.tensor([0.75, 0.0, -0.5]))


def test_top50_mask_keeps_the_upper_half_of_the_pixels():
    weight = torch.ones(4, 4)
    model = PixelSum(weight)
    images = torch.ones(1, 3, 4, 4)
    maps = torch.arange(16.0).view(1, 4, 4)
    scores = fm.masked_scores(model, images, maps, torch.zeros(1, dtype=torch.long), kind="logit", mask="top50")
    assert float(scores["O"]) == 3 * 8 and float(scores["D"]) == 3 * 8 and float(scores["Y"]) == 3 * 16


def test_deletion_and_insertion_curves_equal_hand_sums_in_the_map_order():
    generator = torch.Generator().manual_seed(0)
    weight = torch.rand(8, 8, generator=generator)
    model = PixelSum(weight)
    image = torch.rand(1, 3, 8, 8, generator=generator)
    saliency = weight[None]                  # the ideal order: heaviest pixels first, no ties
    steps = 4                                # 16 pixels per step
    curves = fm.deletion_insertion(model, image, saliency, torch.zeros(1, dtype=torch.long), steps=steps, kind="logit",
                                   canvas=torch.zeros_like(image), batch_size=3)
    contribution = (image[0] * weight).sum(dim=0).flatten()
    order = weight.flatten().argsort(descending=True)
    removed = [contribution[order[: 16 * t]].sum() for t in range(steps + 1)]
    deletion = torch.stack([contribution.sum() - r for r in removed])
    insertion = torch.stack(removed)
    torch.testing.assert_close(curves.deletion[0], deletion)
    torch.testing.assert_close(curves.insertion[0], insertion)
    expected_auc = (deletion.sum() - (deletion[0] + deletion[-1]) / 2) / steps
    torch.testing.assert_close(curves.deletion_auc[0], expected_auc)
    # a worse (reversed) map deletes the light pixels first: higher deletion area, lower insertion area
    worse = fm.deletion_insertion(model, image, -saliency, torch.zeros(1, dtype=torch.long), steps=steps, kind="logit",
                                  canvas=torch.zeros_like(image))
    assert worse.deletion_auc[0] > curves.deletion_auc[0] and worse.insertion_auc[0] < curves.insertion_auc[0]


def test_a_constant_map_deletes_everything_at_once_on_a_real_model(lite0, lite0_batch):
    """Ties are removed together: the curve is the image's probability, then the baseline's."""
    model, _ = lite0
    image = lite0_batch[:1]
    cls = model(image).argmax(dim=1)
    steps = 5
    curves = fm.deletion_insertion(model, image, torch.full((1, 224, 224), 0.3), cls, steps=steps)
    with torch.no_grad():
        p_image = model(image).softmax(dim=1)[0, cls]
        p_baseline = model(torch.zeros_like(image)).softmax(dim=1)[0, cls]
    torch.testing.assert_close(curves.deletion[0], torch.cat([p_image, p_baseline.expand(steps)]), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(curves.deletion_auc[0], (p_baseline + (p_image - p_baseline) / (2 * steps))[0],
                               rtol=1e-4, atol=1e-6)


def test_gaussian_blur_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    images = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = ndimage.gaussian_filter(images.numpy(), sigma=(0, 0, 5, 5), radius=(0, 0, 5, 5), mode="mirror")
    np.testing.assert_allclose(fm.gaussian_blur(images).numpy(), expected, rtol=1e-10, atol=1e-12)


def test_occlusion_of_a_linear_model_correlates_perfectly_with_its_contribution_map():
    generator = torch.Generator().manual_seed(2)
    weight = torch.rand(32, 32, generator=generator)
    image = torch.rand(1, 3, 32, 32, generator=generator)
    model = PixelSum(weight)
    occlusion = fm.occlusion_map(model, image, torch.zeros(1, dtype=torch.long), patch=8, stride=8)
    assert occlusion.shape == (1, 4, 4)
    contribution = (image[0] * weight).sum(dim=0)
    torch.testing.assert_close(occlusion[0], contribution.view(4, 8, 4, 8).sum(dim=(1, 3)), rtol=1e-5, atol=1e-4)
    assert float(fm.rank_correlation(contribution[None], occlusion)[0]) == pytest.approx(1.0)
    assert float(fm.rank_correlation(-contribution[None], occlusion)[0]) == pytest.approx(-1.0)


def test_spearman_agrees_with_scipy_including_ties():
    stats = pytest.importorskip("scipy.stats")
    a = torch.tensor([[1.0, 2.0, 2.0, 5.0, 0.0, 3.0]])
    b = torch.tensor([[0.5, 0.1, 0.9, 2.0, 2.0, 1.0]])
    assert float(fm.spearman(a, b)[0]) == pytest.approx(stats.spearmanr(a[0], b[0])[0], abs=1e-6)


def test_unknown_options_are_refused():
    model = PixelSum(torch.ones(4, 4))
    images, maps, classes = torch.ones(1, 3, 4, 4), torch.rand(1, 4, 4), torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match="soft or top50"):
        fm.masked_scores(model, images, maps, classes, mask="top30")
    with pytest.raises(ValueError, match="probability or logit"):
        fm.masked_scores(model, images, maps, classes, kind="logits")
    with pytest.raises(ValueError, match="at least 1"):
        fm.deletion_insertion(model, images, maps, classes, steps=0)


def test_class_scores_by_kind():
    """Softmax over the classes, the logit, or a multi-label model's sigmoid of that label alone."""
    from camlens.metrics.faithfulness import class_scores

    logits = torch.tensor([[0.0, 2.0, -1.0], [1.0, 1.0, 1.0]])
    classes = torch.tensor([1, 2])
    torch.testing.assert_close(class_scores(logits, classes), torch.tensor([
        math.exp(2) / (1 + math.exp(2) + math.exp(-1)), 1 / 3]))
    torch.testing.assert_close(class_scores(logits, classes, "logit"), torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(class_scores(logits, classes, "sigmoid"),
                               torch.tensor([1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-1))]))
    with pytest.raises(ValueError, match="unknown score kind 'odds'"):
        class_scores(logits, classes, "odds")
