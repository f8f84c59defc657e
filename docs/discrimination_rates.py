"""README's class-discrimination table: how often each method's map of one of two classes, alone
(the top 5, 10 or 20 % of its pixels, the rest blurred), makes the model prefer that class. On 200
two-object scenes with ``scenes-classifier`` (and the same architecture with random weights), on
100 side-by-side composites of ``imagenet_sample_1000`` photos with EfficientNet-Lite0 (fit
``resize``; rates over the composites whose two classes it ranks in its top 5) and on the shared
data's cat-and-dog photos. Run from the checkout: ``.venv/bin/python docs/discrimination_rates.py``
(about ten minutes on 2 CPU cores; Score-CAM on EfficientNet-Lite0's 1,280 maps would take an hour
more, so it is measured on scenes only).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import torch

import camlens
from camlens.data import load_dataset
from camlens.data.scenes import scenes, write_pairs
from camlens.evaluate.discrimination import composite_pairs, discrimination, discrimination_summary, read_pairs
from camlens.models.scenes import SceneClassifier

DATA = Path(os.environ.get("CAMLENS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
GRADIENT = ["gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "liftcam", "guided_backprop", "guided_gradcam"]
# the Grad-CAM paper's cat-and-dog photo (the shared data's two versions of it) and its two classes
PHOTOS = ("cat_dog.jpg", "both.png")


def report(name: str, records: list[dict], recognised_only: bool = True) -> None:
    rows = discrimination_summary(records, recognised_only)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    print(f"\n{name}: {rows[0]['images'] if rows else 0} images")
    print("| % kept | " + " | ".join(methods) + " |")
    for fraction in sorted({r["fraction"] for r in rows}):
        cells = [next(f"{r['rate']:.2f}" for r in rows if r["method"] == m and r["fraction"] == fraction) for m in methods]
        print(f"| {fraction * 100:g} | " + " | ".join(cells) + " |")


def main() -> None:
    work = Path(tempfile.mkdtemp())
    trained = camlens.load("scenes-classifier")
    torch.manual_seed(0)
    random = dataclasses.replace(trained, model=SceneClassifier().eval(), name="random weights")
    pairs = read_pairs(write_pairs(scenes(200, seed=2026, objects=2), work / "scenes"), trained.class_names)
    for model, only in ((trained, True), (random, False)):
        report(f"{model.name} on scenes", discrimination(model, pairs, work / model.name, GRADIENT + ["scorecam"],
                                                         progress=False), only)
    lite = camlens.load("efficientnet-lite0", fit="resize")
    composites = composite_pairs(load_dataset(DATA / "imagenet_sample_1000" / "labels.csv"), work / "composites", 100)
    report("efficientnet-lite0 on composites", discrimination(lite, read_pairs(composites, lite.class_names),
                                                              work / "lite", GRADIENT, progress=False))
    listed = work / "photos.csv"  # absolute paths: read as they are
    listed.write_text("file,class_a,class_b\n" + "".join(f"{DATA / 'gradcam_classics' / name},boxer,tiger cat\n"
                                                          for name in PHOTOS))
    report("efficientnet-lite0 on the cat-and-dog photos",
           discrimination(lite, read_pairs(listed, lite.class_names), work / "photos", GRADIENT, progress=False), False)


if __name__ == "__main__":
    main()
