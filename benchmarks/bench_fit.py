"""Crop, resize or pad: which fit of a photo into the model's square should explanations use?

Measured on real photos with the offline ImageNet models, per fit:

- top-1 / top-5 accuracy on the first N photos of ``imagenet_sample_1000`` (what the fit costs
  the model: it was validated with the center crop);
- on the 12 photos of ``imagenet_val_bbox`` kept at their original geometry, everything measured
  in the *photo's* pixels, so that the three fits are compared on one frame: the share of the
  true boxes' area the model sees at all, and Grad-CAM's map for the true class — its share of
  energy inside the true boxes, and the pointing game (its maximum inside a box).

    python benchmarks/bench_fit.py                  # 300 photos for accuracy
    python benchmarks/bench_fit.py --photos 1000

Needs the shared data (CAMLENS_DATA, default ../shared/data); MobileNetV2 is measured too where
its weights are there.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import torch

import camlens
from camlens.data import load_dataset, map_in_photo
from camlens.metrics.localization import boxes_mask

DATA = Path(os.environ.get("CAMLENS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
FITS = ("crop", "resize", "pad")


def accuracy(loaded: camlens.LoadedModel, photos: list[tuple[Path, int]], batch: int = 32) -> tuple[float, float]:
    top1 = top5 = 0
    with torch.inference_mode():
        for start in range(0, len(photos), batch):
            chunk = photos[start:start + batch]
            images = torch.stack([loaded.preprocessing(camlens.read_image(path)) for path, _ in chunk])
            best = loaded.model(images).topk(5, dim=1).indices
            labels = torch.tensor([label for _, label in chunk])[:, None]
            top1 += int((best[:, :1] == labels).sum())
            top5 += int((best == labels).any(dim=1).sum())
    return top1 / len(photos), top5 / len(photos)


def localization(loaded: camlens.LoadedModel, samples) -> tuple[float, float, float]:
    """Mean share of box area seen, energy inside the boxes and pointing hits, in photo pixels."""
    seen = energy = hits = 0.0
    for sample in samples:
        photo = camlens.read_image(sample.path)
        width, height = photo.size
        truth = boxes_mask(sample.boxes_of(sample.label), (height, width))
        explanation = camlens.explain(loaded.model, loaded.preprocessing(photo)[None], layer=loaded.layer,
                                      methods=("gradcam",), target=sample.label)
        box = loaded.preprocessing.crop_box(photo.size)
        on_photo, (x0, y0, x1, y1) = map_in_photo(explanation.maps["gradcam"][0].float(), box, photo.size)
        full = torch.zeros(height, width)
        full[y0:y1, x0:x1] = on_photo.clamp(min=0)
        visible = torch.zeros(height, width, dtype=torch.bool)
        visible[y0:y1, x0:x1] = True
        seen += float((truth & visible).sum() / truth.sum())
        energy += float(full[truth].sum() / full.sum()) if full.sum() > 0 else 0.0
        hits += float(truth.flatten()[int(full.argmax())])
    return seen / len(samples), energy / len(samples), hits / len(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=300, help="photos of imagenet_sample_1000 for accuracy")
    args = parser.parse_args()
    torch.manual_seed(0)
    with open(DATA / "imagenet_sample_1000" / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[: args.photos]
    photos = [(DATA / "imagenet_sample_1000" / row["filename"], int(row["index"])) for row in rows]
    annotations = DATA / "imagenet_val_bbox" / "annotations.csv"
    with open(annotations, newline="") as handle:
        cropped = {row["file"] for row in csv.DictReader(handle) if row["geometry"] == "resize_short_224_center_crop_224"}
    samples = [s for s in load_dataset(annotations) if s.path.relative_to(annotations.parent).as_posix() not in cropped]
    models = [("efficientnet-lite0", None)]
    weights = DATA / "weights_mobilenet_v2" / "mobilenet_v2_tf2ptq_dequant_fp32_torchvision_layout.pth"
    if weights.exists():
        models.append(("mobilenet-v2", weights))
    print(f"accuracy on {len(photos)} photos of imagenet_sample_1000; localization on the {len(samples)} "
          "photos of imagenet_val_bbox at their own geometry, in the photo's pixels (Grad-CAM, true class)\n")
    print("| model | fit | top-1 | top-5 | box area seen | energy in box | pointing |")
    print("|---|---|---|---|---|---|---|")
    for name, path in models:
        for fit in FITS:
            loaded = camlens.load(name, weights=path, fit=fit)
            top1, top5 = accuracy(loaded, photos)
            seen, energy, hits = localization(loaded, samples)
            print(f"| {name} | {fit} | {top1:.3f} | {top5:.3f} | {seen:.3f} | {energy:.3f} | {hits:.3f} |", flush=True)


if __name__ == "__main__":
    main()
