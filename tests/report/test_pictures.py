"""Pictures and boxes, checked pixel by pixel where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from camlens.metrics.localization import box_from_map
from camlens.report import draw_box, grid, overlay, render_attribution


def test_overlay_is_at_the_original_resolution_and_only_inside_the_box():
    photo = Image.new("RGB", (300, 200), (90, 90, 90))
    saliency = torch.zeros(7, 7)
    saliency[1, 5] = 1.0  # hot near the top right of the covered region
    box = (50.0, 0.0, 250.0, 200.0)
    picture = np.asarray(overlay(photo, saliency, box=box, cmap="jet", alpha=0.5)).astype(int)
    assert picture.shape == (200, 300, 3)
    assert (picture[:, :50] == 90).all() and (picture[:, 250:] == 90).all()  # outside the box: the photo as is
    red = picture[..., 0] - picture[..., 2]
    y, x = np.unravel_index(np.argmax(red), red.shape)
    # the peak of cell (1, 5) of a 7×7 map over a 200×200 region starting at x = 50
    assert abs(x - (50 + 5.5 * 200 / 7)) < 20 and abs(y - 1.5 * 200 / 7) < 20
    with pytest.raises(ValueError, match="one map of shape"):
        overlay(photo, torch.zeros(1, 7, 7))


def test_render_attribution_keeps_the_sign_around_gray():
    attribution = torch.zeros(3, 4, 4)
    attribution[0, 0, 0] = 2.0
    attribution[1, 1, 1] = -2.0
    picture = np.asarray(render_attribution(attribution))
    assert tuple(picture[3, 3]) == (128, 128, 128)
    assert picture[0, 0, 0] == 255 and picture[1, 1, 1] == 0


def test_box_from_map_finds_the_box_and_the_largest_component():
    saliency = torch.zeros(50, 60)
    saliency[10:20, 5:25] = 1.0          # 200 pixels
    saliency[30:35, 40:45] = 0.9         # 25 pixels, a second component
    saliency[0, 59] = 0.1                # below 15% of the max
    assert box_from_map(saliency) == (5, 10, 25, 20)
    assert box_from_map(saliency, largest_component=False) == (5, 10, 45, 35)
    assert box_from_map(saliency, threshold=0.05, largest_component=False) == (5, 0, 60, 35)
    assert box_from_map(torch.zeros(5, 5)) == (0, 0, 5, 5)


def test_draw_box_and_grid():
    boxed = np.asarray(draw_box(Image.new("RGB", (20, 20)), (2, 3, 10, 12), color="lime", width=1))
    assert tuple(boxed[3, 5]) == (0, 255, 0) and tuple(boxed[11, 9]) == (0, 255, 0) and tuple(boxed[7, 5]) == (0, 0, 0)
    panels = [[Image.new("RGB", (10, 10))] * 3, [Image.new("RGB", (10, 10))] * 3]
    picture = grid(panels, [["a", "b", "c"]] * 2, ["row 1", "row 2"], panel_inches=1.0)
    assert picture.width == 300 and picture.height == 270  # 3 × 1.0 in by 2 × 1.35 in at 100 dpi
