"""What a model's task makes of ``--target`` and ``--box``: a text reader explains each character it
read, a model of score maps one channel, over the whole image or inside a box. Hand-built models
with known outputs, so every number is checked."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import camlens
from camlens.data import Preprocessing
from camlens.models import LoadedModel
from camlens.targets import BoxRegion, CTCTarget, RegionScore

PREPROCESSING = Preprocessing(8, 8, (0.5,) * 3, (0.5,) * 3)


class TwoMaps(nn.Module):
    """(B, 3, 8, 8) → (B, 2, 4, 4): channel 0 is the first colour pooled 2×2, channel 1 twice the second."""

    def __init__(self):
        super().__init__()
        self.features = nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.avg_pool2d(self.features(images), 2)
        return torch.stack([pooled[:, 0], 2 * pooled[:, 1]], dim=1)


def test_a_model_of_score_maps_explains_the_channel_named_over_the_whole_image():
    loaded = LoadedModel("maps", TwoMaps(), PREPROCESSING, ("region", "affinity"), "features", task="text-detection")
    images = torch.arange(2 * 3 * 64, dtype=torch.float32).view(2, 3, 8, 8)
    outputs = loaded.model(images)
    first, second = loaded.class_target([]), loaded.class_target(["affinity"])
    assert isinstance(first, RegionScore) and first.channel == 0 and second.channel == 1
    assert torch.allclose(first(outputs).scores, outputs[:, 0].sum(dim=(1, 2)))
    assert second(outputs).classes.tolist() == [1, 1]  # a row's class is its channel
    with pytest.raises(ValueError, match="outputs score maps: name one of them"):
        loaded.class_target(["region,affinity"])
    with pytest.raises(ValueError, match="'glyph'"):
        loaded.class_target(["glyph"])


def test_a_box_region_sums_the_output_pixels_whose_centres_lie_in_each_box():
    outputs = torch.arange(2 * 16, dtype=torch.float32).view(2, 1, 4, 4)
    # an 8×8 input; output pixel (i, j) is centred at input (2i + 1, 2j + 1)
    target = BoxRegion([2, 0, 6, 3], (8, 8))  # columns 1–2, row 0
    assert target(outputs).scores.tolist() == [1 + 2, 17 + 18]
    shared = BoxRegion([[0, 0, 2, 2], [6, 6, 8, 8]], (8, 8))  # two boxes for every image: a row each
    found = shared(outputs)
    assert found.scores.tolist() == [0, 15, 16, 31]
    assert found.image_index.tolist() == [0, 0, 1, 1] and found.positions.tolist() == [0, 1, 0, 1]
    per_image = BoxRegion([[[0, 0, 2, 2]], [[6, 6, 8, 8], [0, 0, 8, 2]]], (8, 8))  # one set per image
    assert per_image(outputs).scores.tolist() == [0, 31, 16 + 17 + 18 + 19]
    # a perturbed batch: each row keeps its own image's box
    rows = per_image.rescore(outputs[[0, 0, 0]], None, torch.tensor([1, 0, 1]), torch.tensor([0, 0, 1]))
    assert rows.tolist() == [15, 0, 0 + 1 + 2 + 3]
    with pytest.raises(ValueError, match="covers no pixel"):
        BoxRegion([0.2, 0.2, 0.8, 0.8], (8, 8))(outputs)
    with pytest.raises(ValueError, match="x1 ≤ x0"):
        BoxRegion([4, 0, 2, 3], (8, 8))
    with pytest.raises(ValueError, match="got boxes for 2 images, but the batch has 3"):
        per_image(torch.zeros(3, 1, 4, 4))
    with pytest.raises(ValueError, match="no box to explain"):
        BoxRegion([[], []], (8, 8))


class Reader(nn.Module):
    """(B, 3, 8, 8) → (B, 4, 3): step t reads the mean of column pair t as character 1 or 2 (blank 0)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        columns = nn.functional.avg_pool2d(self.features(images), (8, 2))[:, 0, 0]  # (B, 4)
        return torch.stack([torch.zeros_like(columns), columns, -columns], dim=2)


def test_a_text_reader_explains_each_character_it_read_and_takes_no_target():
    loaded = LoadedModel("reader", Reader(), PREPROCESSING, ("", "a", "b"), "features", task="text-reading")
    target = loaded.class_target([])
    assert isinstance(target, CTCTarget) and target.blank == 0
    images = torch.zeros(1, 3, 8, 8)
    images[:, :, :, 0:2], images[:, :, :, 4:6] = 1.0, -1.0  # reads "a" at step 0, "b" at step 2
    explanation = camlens.explain(loaded.model, images, "features", "hirescam", target)
    assert explanation.targets.tolist() == [1, 2] and explanation.positions.tolist() == [0, 2]
    peaks = explanation.maps["hirescam"].amax(dim=1).argmax(dim=1)  # the column where each map peaks
    assert peaks.tolist()[0] < 2 <= 4 <= peaks.tolist()[1] < 6
    with pytest.raises(ValueError, match="reads text: it explains each character it read"):
        loaded.class_target(["a"])


def test_several_boxes_explain_as_each_box_alone_by_every_family():
    """Rows of several boxes (and per-image sets) give each box's own maps, also for the methods
    that rescore perturbed copies of the input or the layer (Ablation-CAM, Score-CAM)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 2, 3, padding=1)).eval()
    images = torch.randn(2, 3, 16, 16)
    methods = ("gradcam", "layercam", "ablationcam", "scorecam")
    boxes = [[[0, 0, 8, 8], [8, 4, 16, 12]], [[2, 2, 10, 14]]]
    together = camlens.explain(model, images, "1", methods, BoxRegion(boxes, (16, 16), channel=1))
    assert together.image_index.tolist() == [0, 0, 1] and together.positions.tolist() == [0, 1, 0]
    for row, (image, box) in enumerate([(0, boxes[0][0]), (0, boxes[0][1]), (1, boxes[1][0])]):
        alone = camlens.explain(model, images[image:image + 1], "1", methods, BoxRegion(box, (16, 16), channel=1))
        for method in methods:
            torch.testing.assert_close(together.maps[method][row], alone.maps[method][0], atol=1e-5, rtol=1e-4)


def test_a_box_that_holds_no_output_pixel_is_an_empty_region():
    from camlens.targets import EmptyRegion

    with pytest.raises(EmptyRegion, match="covers no pixel of the 4×4 output"):
        BoxRegion([0, 0, 1, 1], (8, 8))(torch.zeros(1, 1, 4, 4))
    assert issubclass(EmptyRegion, ValueError)
