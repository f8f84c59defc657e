"""EasyOCR's text models (camlens.models.text) on a real photo: CRAFT finds the street sign's words,
english_g2 reads them, the wrappers compute what EasyOCR's own networks compute, and the maps of
LayerCAM and HiResCAM follow each word and each character where Grad-CAM's do not (the numbers
behind the thresholds: docs/text_maps.py)."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch

from camlens.models.text import INSTALL  # the module imports EasyOCR only when a model is built

pytest.importorskip("easyocr", reason=INSTALL)
pytest.importorskip("easyocr_en_models", reason=INSTALL)

from camlens import explain  # noqa: E402
from camlens.data.geometry import box_in_photo  # noqa: E402
from camlens.metrics.localization import box_shares, reading_order  # noqa: E402
from camlens.models.text import (  # noqa: E402
    READER_CHARACTERS,
    craft,
    english_g2,
    read_word,
    word_boxes,
    word_crop,
)
from camlens.targets import BoxRegion, CTCTarget  # noqa: E402

SIASCONSET = (113, 79, 184, 91)  # the sign's top-left word, in the photo's pixels


@pytest.fixture(scope="module")
def detector():
    return craft()


@pytest.fixture(scope="module")
def reader():
    return english_g2()


@pytest.fixture(scope="module")
def detected(detector, street_sign):
    """The street sign as CRAFT's input, and the word boxes found in it (the input's pixels)."""
    image = detector.preprocessing(street_sign)[None]
    with torch.no_grad():
        output = detector.model(image)
    return image, word_boxes(output, tuple(image.shape[-2:]))[0]


@pytest.fixture(scope="module")
def words(detector, reader, street_sign, detected):
    """Each detected word's crop and reading."""
    image, boxes = detected
    covered = detector.preprocessing.crop_box(street_sign.size)
    crops = [word_crop(street_sign, box_in_photo(box, covered, tuple(image.shape[-2:]))) for box in boxes]
    return [(crop, read_word(reader, crop)) for crop in crops]


def test_craft_finds_the_words_of_the_street_sign(detector, street_sign, detected):
    image, boxes = detected
    assert 15 <= len(boxes) <= 25  # 18: eight signs of one to three words
    covered = detector.preprocessing.crop_box(street_sign.size)
    in_photo = [box_in_photo(box, covered, tuple(image.shape[-2:])) for box in boxes]
    top_left = min(in_photo, key=lambda box: box[0] + box[1])
    assert np.allclose(top_left, SIASCONSET, atol=4)
    assert all(y1 - y0 < 20 and x1 - x0 > y1 - y0 for x0, y0, x1, y1 in in_photo)  # words, not whole signs


def test_the_reader_reads_the_words_of_the_sign(reader, street_sign, words):
    assert read_word(reader, word_crop(street_sign, SIASCONSET)) == "Siasconset"
    readings = {reading for _, reading in words}
    assert {"Siasconset", "Surfside", "Wauwinet", "Museum", "Police", "Station", "Hospital-Airport"} <= readings


def test_a_word_photo_reads_through_the_readers_own_preprocessing(reader, street_sign):
    photo = street_sign.crop((109, 75, 188, 95))  # SIASCONSET with a margin
    with torch.no_grad():
        assert reader.reading(reader.model(reader.preprocessing(photo)[None])) == ["Siasconset"]
    layers = {info.name: info for info in reader.layers()[0]}
    assert layers[reader.layer].explainable and layers[reader.layer].shape == (1, 128, 16, 48)


def test_craft_wrapper_is_easyocrs_network_channels_first(detector):
    from easyocr.detection import get_detector
    import easyocr_en_models

    raw = get_detector(f"{easyocr_en_models.model_dir()}/craft_mlt_25k.pth", quantize=False)
    images = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, _ = raw(images)
        scores = detector.model(images)
    assert scores.shape == (1, 2, 32, 48)
    torch.testing.assert_close(scores, expected.permute(0, 3, 1, 2))


def test_reader_wrapper_is_easyocrs_network_on_the_gray_crop(reader, street_sign):
    import cv2
    import easyocr_en_models
    from easyocr.recognition import get_recognizer

    raw, _ = get_recognizer("generation2", {"input_channel": 1, "output_channel": 256, "hidden_size": 256},
                            READER_CHARACTERS, {}, {}, f"{easyocr_en_models.model_dir()}/english_g2.pth",
                            quantize=False)
    raw.eval()  # as EasyOCR's recognizer_predict does before reading
    crop = word_crop(street_sign, SIASCONSET)
    rgb = ((crop[0] * 0.5 + 0.5).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)  # EasyOCR's gray, rounded to bytes
    as_rgb = torch.from_numpy(np.repeat(gray[None], 3, axis=0)).float()[None] / 255
    with torch.no_grad():
        expected = raw((torch.from_numpy(gray).float()[None, None] / 255 - 0.5) / 0.5, None)
        scores = reader.model((as_rgb - 0.5) / 0.5)
        colour = reader.model(crop)
    assert scores.shape == (1, crop.shape[-1] // 4 - 1, 1 + len(READER_CHARACTERS))
    torch.testing.assert_close(scores, expected, atol=1e-4, rtol=1e-4)  # a gray photo: the same network
    # a colour photo: OpenCV's gray but for its rounding to bytes (0.11 here; red and blue swapped: 1.1)
    torch.testing.assert_close(colour, expected, atol=0.3, rtol=0)
    assert reader.reading(colour) == reader.reading(expected) == ["Siasconset"]


def test_layercam_and_hirescam_keep_a_words_map_on_that_word(detector, detected):
    image, boxes = detected
    word = 0
    size = tuple(image.shape[-2:])
    methods = ("gradcam", "layercam", "hirescam")
    explanation = explain(detector.model, image, detector.layer, methods, BoxRegion(boxes[word], size, channel=0))
    share = {method: box_shares(explanation.maps[method][0], boxes, word) for method in methods}
    for method in ("layercam", "hirescam"):
        assert share[method][0] > 0.5 and share[method][1] < 0.05, share
    assert share["gradcam"][0] < 0.2 and share["gradcam"][1] > share["gradcam"][0], share  # every word lights up


def test_character_maps_follow_the_reading_order_for_layercam_and_hirescam(reader, words):
    methods = ("gradcam", "layercam", "hirescam")
    rhos = {method: [] for method in methods}
    long_words = [(crop, reading) for crop, reading in words if len(reading) >= 3]
    assert len(long_words) >= 12
    for crop, reading in long_words:
        explanation = explain(reader.model, crop, reader.layer, methods, CTCTarget())
        assert len(explanation) == len(reading)  # one map per character read
        for method in methods:
            rhos[method].append(reading_order(explanation.layer_maps[method]))
    for method in ("layercam", "hirescam"):
        assert sum(rho >= 0.9 for rho in rhos[method]) >= 10, rhos[method]
    assert statistics.median(rhos["gradcam"]) < 0.5, rhos["gradcam"]


def test_word_boxes_refuse_an_output_that_is_not_crafts():
    with pytest.raises(ValueError, match=r"\(B, 2, h, w\)"):
        word_boxes(torch.zeros(1, 3, 8, 8), (16, 16))
