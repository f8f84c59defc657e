"""Localization metrics: boxes from maps, IoU, the pointing game, energy, localization errors."""

from __future__ import annotations

import math

import pytest
import torch

from camlens.data import Preprocessing, boxes_in_input
from camlens.metrics import localization as loc

PREPROCESSING = Preprocessing(resize=256, crop=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def box_map(box, size=(224, 224)) -> torch.Tensor:
    return loc.boxes_mask([box], size).float()


def test_a_map_that_is_one_exactly_on_the_box():
    box = (40, 60, 120, 150)
    saliency = box_map(box)
    assert loc.box_from_map(saliency) == box
    assert loc.box_iou(loc.box_from_map(saliency), box) == 1.0
    region = loc.boxes_mask([box], (224, 224))
    assert loc.energy_in(saliency, region) == 1.0
    assert loc.pointing_hit(saliency, region)
    assert loc.mask_iou(saliency, region) == 1.0


def test_iou_by_hand():
    assert loc.box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert loc.box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert loc.best_iou((0, 0, 10, 10), [(20, 20, 30, 30), (0, 0, 10, 20)]) == pytest.approx(0.5)
    assert loc.best_iou((0, 0, 10, 10), []) == 0.0


def test_threshold_and_components():
    saliency = torch.zeros(50, 50)
    saliency[5:15, 5:25] = 1.0      # the largest component
    saliency[30:35, 30:35] = 0.9    # a smaller one
    saliency[40:45, 0:5] = 0.1      # below 15% of the max
    assert loc.box_from_map(saliency) == (5, 5, 25, 15)
    assert loc.box_from_map(saliency, largest_component=False) == (5, 5, 35, 35)
    assert loc.box_from_map(saliency, threshold=0.05, largest_component=False) == (0, 5, 35, 45)


def test_pointing_game_tolerance():
    region = loc.boxes_mask([(100, 100, 150, 150)], (224, 224))
    saliency = torch.zeros(224, 224)
    saliency[125, 160] = 1.0  # 10 px right of the box (its last column is 149)
    assert loc.pointing_hit(saliency, region, tolerance=15)
    assert not loc.pointing_hit(saliency, region, tolerance=5)


def test_energy_by_hand():
    region = loc.boxes_mask([(0, 0, 2, 2)], (4, 4))
    saliency = torch.ones(4, 4)
    assert loc.energy_in(saliency, region) == pytest.approx(4 / 16)
    assert loc.energy_in(torch.zeros(4, 4), region) == 0.0


def test_localization_errors_need_the_right_class_and_iou_half():
    truths = [(10, 10, 60, 60)]
    good, poor = (12, 12, 58, 58), (40, 40, 100, 100)
    assert loc.localization_errors([3, 5], [good, poor], 3, truths) == (0.0, 0.0)
    assert loc.localization_errors([5, 3], [good, good], 3, truths) == (1.0, 0.0)   # right box, wrong top-1 class
    assert loc.localization_errors([3, 5], [poor, good], 3, truths) == (1.0, 1.0)   # right class, box too far
    assert loc.localization_errors([5, 7], [good, good], 3, truths) == (1.0, 1.0)


def test_a_box_shaped_map_gives_iou_one_after_resize_and_crop():
    box = boxes_in_input([(64, 96, 256, 320)], (512, 512), PREPROCESSING)[0]
    saliency = box_map(box)
    assert loc.box_iou(loc.box_from_map(saliency), box) == 1.0


def test_reading_order_is_the_rank_correlation_of_index_and_peak_column():
    from camlens.metrics.localization import reading_order

    maps = torch.zeros(4, 3, 10)
    for index, (row, column) in enumerate([(0, 1), (2, 4), (1, 4), (0, 9)]):  # a tie in the middle
        maps[index, row, column] = 1.0
    # peak columns 1, 4, 4, 9 against 0, 1, 2, 3: ranks 1, 2.5, 2.5, 4 → ρ = 4.5 / sqrt(4.5 · 5)
    assert reading_order(maps) == pytest.approx(4.5 / (4.5 * 5) ** 0.5, abs=1e-6)
    assert reading_order(maps.flip(0)) == pytest.approx(-4.5 / (4.5 * 5) ** 0.5, abs=1e-6)
    assert math.isnan(reading_order(maps[:1]))
    with pytest.raises(ValueError, match="maps \\(N, h, w\\) of one sequence"):
        reading_order(maps[0])


def test_box_shares_split_a_maps_energy_between_its_box_and_the_others():
    from camlens.metrics.localization import box_shares

    saliency = torch.zeros(4, 4)
    saliency[0, 0], saliency[0, 2], saliency[3, 3] = 3.0, 1.0, 4.0
    boxes = [(0, 0, 2, 2), (2, 0, 4, 2), (1, 1, 4, 4)]  # the third overlaps the first at (1, 1)
    assert box_shares(saliency, boxes, 0) == pytest.approx((3 / 8, 5 / 8, False))
    assert box_shares(saliency, boxes, 2) == pytest.approx((4 / 8, 4 / 8, True))
