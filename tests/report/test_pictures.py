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


def test_draw_box():
    boxed = np.asarray(draw_box(Image.new("RGB", (20, 20)), (2, 3, 10, 12), color="lime", width=1))
    assert tuple(boxed[3, 5]) == (0, 255, 0) and tuple(boxed[11, 9]) == (0, 255, 0) and tuple(boxed[7, 5]) == (0, 0, 0)


def test_grid_places_each_panel_scaled_into_its_cell_under_titles_drawn_once():
    colours = [[(255, 0, 0), (0, 255, 0), (0, 0, 255)], [(255, 255, 0), None, (0, 255, 255)]]
    panels = [[None if c is None else Image.new("RGB", (20, 10), c) for c in row] for row in colours]
    long_title = "a title far too long for a fifty pixel panel"
    picture = grid(panels, [["a", long_title, "c"]] * 2, ["row 1", "row 2"], panel_size=50, font_size=10)
    gap, line, cell = 4, 16, 25  # the sheet's spacing, a text line of a 10-pixel font, a 20×10 panel scaled to 50×25
    # the rows share their titles: one line of titles heads the sheet, then each row's label and panels
    tops = [gap + 2 * line, gap + 2 * line + cell + gap + line]
    assert picture.size == (gap + 3 * (50 + gap), tops[1] + cell + gap)
    pixels = np.asarray(picture)
    for r, row in enumerate(colours):
        for c, colour in enumerate(row):
            x, y = gap + c * (50 + gap) + 25, tops[r] + cell // 2
            assert tuple(pixels[y, x]) == (colour or (255, 255, 255))
            assert tuple(pixels[tops[r] - 3, x]) == (255, 255, 255)  # above the panel: the sheet's white
    title_band = pixels[gap: gap + line, gap + 50 + gap: gap + 2 * (50 + gap)]
    assert (title_band < 128).any() and (title_band[:, -gap:] == 255).all()  # the long title is cut to its panel
    assert (pixels[tops[0] + cell + gap: tops[1] - line] == 255).all()  # no second line of titles


def test_grid_rows_with_their_own_titles_and_portrait_panels_keep_square_cells():
    panels = [[Image.new("RGB", (10, 20), (255, 0, 0))], [Image.new("RGB", (20, 10), (0, 0, 255))]]
    picture = grid(panels, [["first"], ["second"]], ["row 1", "row 2"], panel_size=50, font_size=10)
    gap, line = 4, 16
    assert picture.size == (gap + 50 + gap, gap + 2 * (2 * line + 50 + gap))


def test_overview_pages_hold_at_most_per_page_rows(tmp_path):
    from camlens.report.overview import OverviewPages

    pages = OverviewPages(tmp_path, per_page=2, thumbnail=32)
    for index in range(5):
        pages.add([Image.new("RGB", (64, 48), (index * 40, 0, 0))], [f"photo {index}"], f"row {index}")
    assert pages.written == ["overview-001.png", "overview-002.png"]  # the third waits for more rows
    pages.flush()
    assert pages.written[-1] == "overview-003.png"
    heights = []
    for name in pages.written:
        with Image.open(tmp_path / name) as page:
            heights.append(page.height)
    assert heights[0] == heights[1] and heights[2] < 0.6 * heights[0]
    with pytest.raises(ValueError, match="at least one photo"):
        OverviewPages(tmp_path, per_page=0)


def test_overlay_colours_by_the_colormap_and_bounds_the_resolution():
    photo = Image.new("RGB", (4000, 3000), (90, 90, 90))
    saliency = torch.zeros(4, 4)
    saliency[:2] = 1.0  # hot top half, cold bottom half
    picture = np.asarray(overlay(photo, saliency, cmap="jet", alpha=0.5)).astype(int)
    assert picture.shape == (1536, 2048, 3)  # the longest side scaled to the default 2048
    from matplotlib import colormaps

    for y, level in ((100, 1.0), (1400, 0.0)):
        expected = np.round(0.5 * 90 + 0.5 * np.round(np.asarray(colormaps["jet"](level)[:3]) * 255))
        assert np.abs(picture[y, 1000] - expected).max() <= 1
    full = overlay(photo, saliency, max_side=None)
    assert full.size == (4000, 3000)
    with pytest.raises(ValueError, match="unknown colormap 'jett'"):
        overlay(photo, saliency, cmap="jett")
