"""Measure CAMs of EasyOCR's text models (:mod:`camlens.models.text`) on two photos of the shared
data — a street sign and a scoreboard — and draw two pictures for the README.

1. Text detection (CRAFT): each word found is explained by its region score
   (:class:`~camlens.targets.BoxRegion` over channel 0); the table gives, per method and layer, the
   share of the map's energy inside that word's box, inside the *other* words' boxes, and how often
   the map peaks inside the word's own box (:func:`~camlens.metrics.localization.box_shares`).
2. Image → text (english_g2): each detected word is cut out and read; for words of three characters
   or more, one map per character read (:class:`~camlens.targets.CTCTarget`), the column where
   each map peaks at the layer's resolution, and the Spearman correlation of those columns with
   the characters' order (:func:`~camlens.metrics.localization.reading_order`).
3. ``docs/images/text_box_map.jpg`` (one word of the street sign) and
   ``docs/images/character_maps.jpg`` (the maps of each character of one word).

Run from the checkout: ``.venv/bin/python docs/text_maps.py`` (a few minutes on two CPU cores;
``--quick`` measures the default layers only). The photos are found under ``CAMLENS_DATA``
(default ``../shared/data`` beside the checkout).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image

import camlens
from camlens import explain
from camlens.data.geometry import Box, box_in_photo
from camlens.metrics.localization import box_shares, reading_order
from camlens.models.text import CRAFT_LAYER, READER_LAYER, craft, english_g2, word_boxes, word_crop
from camlens.report.pictures import draw_box, overlay
from camlens.report.sheets import grid
from camlens.targets import BoxRegion, CTCTarget

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("CAMLENS_DATA", HERE.parent.parent / "shared" / "data"))
PHOTOS = ("imagenet_sample_1000/n06794110_street_sign.JPEG", "imagenet_sample_1000/n04149813_scoreboard.JPEG")
METHODS = ("gradcam", "gradcampp", "xgradcam", "layercam", "hirescam")
# measured at the default layer only; Ablation-CAM (256 channels × each character) took over 4
# minutes there on two cores and is left out
SLOW_METHODS = ("liftcam",)
CRAFT_LAYERS = ("craft.upconv1", "craft.upconv2", "craft.upconv3", "craft.upconv4")
READER_LAYERS = tuple(f"recognizer.FeatureExtraction.ConvNet.{i}" for i in (4, 9, 16, 19))
BOX_PICTURE, CHARACTER_PICTURE = HERE / "images" / "text_box_map.jpg", HERE / "images" / "character_maps.jpg"


def detect(detector, photo: Image.Image) -> tuple[torch.Tensor, list[Box]]:
    """The photo as CRAFT's input (1, 3, 512, 512) and its word boxes in the input's pixels."""
    image = detector.preprocessing(photo)[None]
    with torch.no_grad():
        output = detector.model(image)
    return image, word_boxes(output, tuple(image.shape[-2:]))[0]


def box_table(detector, images: list[torch.Tensor], boxes: list[list[Box]], layer: str,
              methods: tuple[str, ...]) -> dict[str, tuple[float, float, float]]:
    """Per method, over every word of every image: the mean share of the map's energy inside the
    word's own box, the mean share inside the other words' boxes, and the share of maps that
    peak inside their own box."""
    found = {method: [] for method in methods}
    for image, words in zip(images, boxes):
        size = tuple(image.shape[-2:])
        explanation = explain(detector.model, image, layer, methods, BoxRegion(words, size, channel=0))
        for method in methods:
            found[method] += [box_shares(explanation.maps[method][row], words, row) for row in range(len(words))]
    return {method: tuple(statistics.fmean(values) for values in zip(*rows)) for method, rows in found.items()}


def character_table(reader, crops: list[torch.Tensor], layer: str, methods: tuple[str, ...]) -> dict[str, list[float]]:
    """Per method, one Spearman correlation per word: the column where each character's map
    peaks (at the layer's resolution) against the character's place in the reading."""
    rhos = {method: [] for method in methods}
    for crop in crops:
        explanation = explain(reader.model, crop, layer, methods, CTCTarget())
        for method in methods:
            rhos[method].append(reading_order(explanation.layer_maps[method]))
    return rhos


def print_words(readings: list[str], rhos: dict[str, list[float]]) -> None:
    """Each word's Spearman correlation, method by method."""
    print(f"\n{'word':18}" + "".join(f"{method:>10}" for method in rhos))
    for number, reading in enumerate(readings):
        print(f"{reading!r:18}" + "".join(f"{values[number]:10.2f}" for values in rhos.values()))


def print_box_table(title: str, table: dict[str, tuple[float, float, float]]) -> None:
    print(f"\n{title}\n{'method':12} {'own box':>8} {'other words':>12} {'peak in own':>12}")
    for method, (own, others, peak) in table.items():
        print(f"{method:12} {own:8.3f} {others:12.3f} {peak:12.2f}")


def print_character_table(title: str, rhos: dict[str, list[float]]) -> None:
    words = len(next(iter(rhos.values())))
    print(f"\n{title} ({words} words)\n{'method':12} {'median ρ':>9} {'mean ρ':>7} {'ρ ≥ 0.9':>8}")
    for method, values in rhos.items():
        print(f"{method:12} {statistics.median(values):9.2f} {statistics.fmean(values):7.2f} "
              f"{sum(v >= 0.9 for v in values):5d}/{words}")


def crop_picture(crop: torch.Tensor) -> Image.Image:
    """A word crop (1, 3, 64, W) normalized to [−1, 1] → the RGB picture it came from."""
    pixels = ((crop[0] * 0.5 + 0.5).clamp(0, 1).permute(1, 2, 0) * 255 + 0.5).to(torch.uint8)
    return Image.fromarray(pixels.numpy())


def box_picture(detector, photo: Image.Image, image: torch.Tensor, words: list[Box], word: int) -> Image.Image:
    """The maps of one word's region score on the photo, one panel per method, the word boxed."""
    methods = ("gradcam", "layercam", "hirescam")
    explanation = explain(detector.model, image, detector.layer, methods,
                          BoxRegion(words[word], tuple(image.shape[-2:]), channel=0))
    covered = detector.preprocessing.crop_box(photo.size)
    box = box_in_photo(words[word], covered, tuple(image.shape[-2:]))
    panels = [draw_box(overlay(photo, explanation.maps[method][0], covered), box, width=2) for method in methods]
    return grid([panels], [[camlens.METHODS[m].title for m in methods]], panel_size=330)


def character_picture(reader, crop: torch.Tensor, reading: str) -> Image.Image:
    """The map of each character of one word, a row per method."""
    methods = ("gradcam", "layercam", "hirescam")
    explanation = explain(reader.model, crop, reader.layer, methods, CTCTarget())
    picture = crop_picture(crop)
    panels = [[overlay(picture, explanation.maps[method][row]) for row in range(len(explanation))]
              for method in methods]
    titles = [[f"'{character}'" for character in reading]] * len(methods)
    return grid(panels, titles, row_labels=[camlens.METHODS[m].title for m in methods], panel_size=170, font_size=13)


def save_small(picture: Image.Image, path: Path, limit: int = 150_000) -> None:
    """A JPEG of at most ``limit`` bytes (quality lowered until it fits)."""
    for quality in (85, 75, 65, 55):
        picture.save(path, format="JPEG", quality=quality, optimize=True)
        if path.stat().st_size <= limit:
            break
    size = path.stat().st_size // 1000
    print(f"wrote {path.relative_to(HERE.parent)} ({picture.width}×{picture.height}, {size} kB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the default layers only")
    quick = parser.parse_args().quick
    torch.set_num_threads(min(2, torch.get_num_threads()))
    missing = [name for name in PHOTOS if not (DATA / name).is_file()]
    if missing:
        sys.exit(f"photos not found under {DATA} (set CAMLENS_DATA): {', '.join(missing)}")
    detector, reader = craft(), english_g2()
    photos = [Image.open(DATA / name).convert("RGB") for name in PHOTOS]

    started = time.perf_counter()
    images, boxes, crops, readings = [], [], [], []
    for name, photo in zip(PHOTOS, photos):
        image, words = detect(detector, photo)
        images.append(image)
        boxes.append(words)
        covered = detector.preprocessing.crop_box(photo.size)
        print(f"\n{Path(name).name}: {len(words)} words (box in the photo's pixels → reading)")
        for box in words:
            in_photo = box_in_photo(box, covered, tuple(image.shape[-2:]))
            crop = word_crop(photo, in_photo)
            with torch.no_grad():
                reading = reader.reading(reader.model(crop))[0]
            print(f"  ({', '.join(f'{v:.0f}' for v in in_photo)})  {reading!r}")
            if len(reading) >= 3:
                crops.append(crop)
                readings.append(reading)
    print(f"detection and reading: {time.perf_counter() - started:.1f} s")

    for layer in (CRAFT_LAYER,) if quick else CRAFT_LAYERS:
        started = time.perf_counter()
        table = box_table(detector, images, boxes, layer, METHODS)
        print_box_table(f"word maps at {layer}{' (default)' if layer == CRAFT_LAYER else ''}, "
                        f"{sum(map(len, boxes))} words, {time.perf_counter() - started:.0f} s", table)
    for layer in (READER_LAYER,) if quick else READER_LAYERS:
        started = time.perf_counter()
        rhos = character_table(reader, crops, layer, METHODS)
        print_character_table(f"character maps at {layer}{' (default)' if layer == READER_LAYER else ''}, "
                              f"{time.perf_counter() - started:.0f} s", rhos)
        if layer == READER_LAYER:
            default = rhos
    for method in SLOW_METHODS:
        started = time.perf_counter()
        rhos = character_table(reader, crops, READER_LAYER, (method,))
        print_character_table(f"character maps at {READER_LAYER}, {time.perf_counter() - started:.0f} s", rhos)
        default.update(rhos)
    print_words(readings, default)
    print("\nwords read (≥ 3 characters):", ", ".join(repr(r) for r in readings))

    street = 0
    word = max(range(len(boxes[street])), key=lambda k: boxes[street][k][2] - boxes[street][k][0])
    save_small(box_picture(detector, photos[street], images[street], boxes[street], word), BOX_PICTURE)
    chosen = next((k for k, r in enumerate(readings) if r == "Museum"), 0)
    save_small(character_picture(reader, crops[chosen], readings[chosen]), CHARACTER_PICTURE)


if __name__ == "__main__":
    main()
