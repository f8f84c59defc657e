"""The explorer page in a real browser (headless Chromium from Debian's packages, driven by
Playwright) against a real ``camlens serve``: upload a photo, choose a method and a class, see
the overlay, move the opacity slider, download the PNG and the maps."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from support import SAMPLE_IMAGES


@pytest.fixture(scope="module")
def server(start_server):
    return start_server()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.goto(server.url)
    yield opened
    context.close()


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _loaded(page, selector: str) -> None:
    page.wait_for_function("s => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0 }",
                           arg=selector, timeout=60_000)


def test_upload_choose_a_method_and_a_class_see_the_overlay_and_download_it(page, server, tmp_path):
    page.set_input_files("#file", str(SAMPLE_IMAGES / "owl.jpg"))
    page.uncheck("#methods input[value=gradcam]")
    page.check("#methods input[value=layercam]")
    page.fill("#class", "grey ow")  # the class box searches the model's classes as one types
    page.wait_for_selector("#class-names option[value='great grey owl']", state="attached")
    page.fill("#class", "great grey owl")
    page.click("#explain")
    page.wait_for_selector("figure[data-method=layercam] img.heat", timeout=60_000)
    _loaded(page, "figure[data-method=layercam] img.heat")
    _loaded(page, "#photo")
    assert page.locator("section.row h3").all_inner_texts() == ["great grey owl (24), p = 0.062"]
    assert page.locator("figure").count() == 1 and "LayerCAM" in page.inner_text("figure figcaption")
    assert page.locator("#predictions li").count() == 5

    stack = page.locator("figure[data-method=layercam] .stack")
    shown = _pixels(stack.screenshot())
    page.fill("#opacity", "0")  # the slider: no colour, the photo alone
    photo = _pixels(stack.screenshot())
    assert np.abs(shown - photo).mean() > 15  # the overlay is not the photo
    page.fill("#opacity", "100")
    assert np.abs(_pixels(stack.screenshot()) - photo).mean() > np.abs(shown - photo).mean()  # more colour

    page.fill("#opacity", "50")
    with page.expect_download() as download:
        page.click("figure[data-method=layercam] a.download-png")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "layercam_great_grey_owl.png"
    with Image.open(saved) as picture:
        assert picture.format == "PNG" and picture.size == (512, 384)  # the photo's size
        overlay = np.asarray(picture.convert("RGB")).astype(int)
    result_photo = _pixels(httpx.get(server.url + page.get_attribute("#photo", "src")).content)
    assert np.abs(overlay - result_photo).mean() > 15

    with page.expect_download() as download:
        page.click("#download-maps")
    maps = torch.load(download.value.path(), weights_only=True)
    assert maps["classes"].tolist() == [24] and set(maps["maps"]) == {"layercam"}


def test_a_sample_needs_no_upload_and_a_bad_file_says_why_on_the_page(page, tmp_path):
    page.select_option("#sample", "parrot.jpg")
    page.click("#explain")
    _loaded(page, "figure[data-method=gradcam] img.heat")
    assert page.locator("section.row").count() == 3  # the top three classes by default
    assert "macaw" in page.inner_text("section.row h3 >> nth=0")

    notes = tmp_path / "holiday.jpg"
    notes.write_text("not a photo at all")
    page.set_input_files("#file", str(notes))
    page.click("#explain")
    page.wait_for_selector("#status.error")
    assert "not an image file" in page.inner_text("#status")
    page.select_option("#sample", "owl.jpg")  # and the page goes on
    page.click("#explain")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('Done')", timeout=60_000)


def test_choosing_a_layer_from_the_models_candidates(page):
    page.wait_for_function("document.querySelectorAll('#layer option').length > 10", timeout=60_000)
    options = page.eval_on_selector_all("#layer option", "options => options.map(o => o.value)")
    assert options[0] == "auto" and "_blocks.10" in options and "_head_act" in options
    assert page.inner_text("#layer option[value=_head_act]") == "_head_act  ReLU6 (1, 1280, 7, 7)"
    page.select_option("#sample", "owl.jpg")
    page.select_option("#layer", "_blocks.10")
    page.click("#explain")
    page.wait_for_function("document.querySelector('#status').textContent.startsWith('Done')", timeout=60_000)
    assert "layer _blocks.10" in page.inner_text(".controls")
