"""How well CAMs of PP-OCRv4 (camlens.models.ppocr) stay on the word and follow the characters.

Run by hand: ``python docs/ppocr_maps.py`` (a few minutes on a CPU; ``CAMLENS_DATA`` is the shared
data folder, by default /work/shared/data). Prints two tables per layer:

(a) the DBNet detector: words found by ``word_boxes`` on its own output; per word, the map of its
    region score (the probability summed inside its box, as ``BoxRegion``) for each method; the
    share of the map's energy inside the word's own box, inside the other words' boxes, and how
    often the map's peak lies in the word's box (``metrics.localization.box_shares``).
(b) the SVTR reader on the crops of those words (``word_crop``): one map per character it reads
    (``CTCTarget``, log-probability); the column where each map (over the word, not its padding)
    peaks against the character's index in the word: Spearman's correlation per word of two or
    more characters (``metrics.localization.reading_order``).

``--quick`` measures only the default layers.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import torch
from PIL import Image

from camlens import explain
from camlens.metrics.localization import box_shares, reading_order
from camlens.models import ppocr
from camlens.targets import BoxRegion, CTCTarget

METHODS = ("gradcam", "gradcampp", "xgradcam", "layercam", "hirescam")
IMAGES = ("n06794110_street_sign.JPEG", "n04149813_scoreboard.JPEG")
# DBNet: the fused FPN features (1/4), the head's first ReLU (1/4), its second ReLU (1/2).
DETECTOR_LAYERS = ("p2o/Concat/0", "p2o/Relu/10", "p2o/Relu/11")
# SVTR: the CNN's last block (3 × 80), pooled to one row (1 × 40), the tokens before the two
# attention blocks, after them, and the last features before the per-step classifier.
READER_LAYERS = ("p2o/Add/230", "p2o/AveragePool/0", "p2o/Mul/177", "p2o/Transpose/7", "p2o/Mul/200", "p2o/Mul/206")


def detection(detector, photo: Image.Image, layers, methods=METHODS):
    """Per layer and method: the rows of (own energy, others' energy, peak inside) per word, the
    word boxes (in the photo's pixels) and their input."""
    inputs = ppocr.detector_input(photo)
    size = tuple(inputs.shape[-2:])
    with torch.no_grad():
        boxes = ppocr.word_boxes(detector.model(inputs))[0]
    results = {}
    for layer in layers:
        found = explain(detector.model, inputs, layer, methods, BoxRegion(boxes, size))
        for method in methods:
            results[layer, method] = [box_shares(found.maps[method][word], boxes, word) for word in range(len(boxes))]
    scale_x, scale_y = photo.width / size[1], photo.height / size[0]
    return results, [(x0 * scale_x, y0 * scale_y, x1 * scale_x, y1 * scale_y) for x0, y0, x1, y1 in boxes], inputs


def reading(reader, crops: torch.Tensor, widths: list[int], layers, methods=METHODS):
    """Per layer and method: Spearman's correlation of peak column and character index per word
    (of at least two characters), and the words read."""
    with torch.no_grad():
        words = reader.reading(reader.model(crops))
    results = {}
    for layer in layers:
        found = explain(reader.model, crops, layer, methods, CTCTarget())
        for method in methods:
            correlations = []
            for image, word in enumerate(words):
                rows = (found.image_index == image).nonzero().flatten()
                if len(rows) >= 2:  # the maps over the word, not its padding
                    correlations.append(reading_order(found.maps[method][rows][:, :, :widths[image]]))
            results[layer, method] = correlations
    return results, words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the default layers")
    arguments = parser.parse_args()
    warnings.filterwarnings("ignore", message="Using a non-tuple sequence")  # onnx2torch's Slice
    torch.manual_seed(0)
    folder = Path(os.environ.get("CAMLENS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / \
        "imagenet_sample_1000"
    started = time.perf_counter()
    detector, reader = ppocr.ppocr_detector(), ppocr.ppocr_reader()
    print(f"loaded and checked both models in {time.perf_counter() - started:.1f} s")
    detector_layers = (ppocr.DETECTOR_LAYER,) if arguments.quick else DETECTOR_LAYERS
    reader_layers = (ppocr.READER_LAYER,) if arguments.quick else READER_LAYERS

    detections, crops, widths, labels = {}, [], [], []
    for name in IMAGES:
        photo = Image.open(folder / name).convert("RGB")
        started = time.perf_counter()
        results, boxes, inputs = detection(detector, photo, detector_layers)
        print(f"{name}: {len(boxes)} words, input {tuple(inputs.shape[-2:])}, {time.perf_counter() - started:.0f} s")
        for key, rows in results.items():
            detections.setdefault(key, []).extend(rows)
        for box in boxes:
            crop, width = ppocr.word_crop(photo, box)
            crops.append(crop)
            widths.append(width)
            labels.append(name.split("_", 1)[1].split(".")[0])

    print("\n(a) DBNet, the region score of one word: mean share of the map's energy in its own box, in the "
          f"other words' boxes, and how often the peak is in its box ({len(next(iter(detections.values())))} words)")
    print(f"{'layer':<18}{'method':<11}{'own':>7}{'others':>8}{'peak in':>9}")
    for (layer, method), rows in detections.items():
        own, others, hits = zip(*rows)
        print(f"{layer:<18}{method:<11}{sum(own) / len(own):>7.3f}{sum(others) / len(others):>8.3f}"
              f"{sum(hits):>5}/{len(hits)}")

    started = time.perf_counter()
    readings, words = reading(reader, torch.cat(crops), widths, reader_layers)
    print(f"\n(b) SVTR reader on {len(words)} crops ({time.perf_counter() - started:.0f} s):")
    for label, word in zip(labels, words):
        print(f"  {label}: {word!r}")
    print("per character a map; Spearman(peak column, character index) per word of ≥ 2 characters")
    print(f"{'layer':<20}{'method':<11}{'words':>6}{'mean':>7}{'min':>7}{'≥ 0.9':>7}")
    for (layer, method), correlations in readings.items():
        tensor = torch.tensor(correlations)
        print(f"{layer:<20}{method:<11}{len(tensor):>6}{float(tensor.mean()):>7.3f}{float(tensor.min()):>7.3f}"
              f"{int((tensor >= 0.9).sum()):>7}")


if __name__ == "__main__":
    main()
