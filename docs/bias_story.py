"""The Grad-CAM paper's dataset-bias story on scenes, end to end: README's bias and trust pictures
and tables. 200 held-out scenes, framed as the biased training set was (a magenta frame on every
scene with a star), are audited with ``scenes-biased`` and ``scenes-rebalanced``, and the two
models compared. Run from the checkout: ``.venv/bin/python docs/bias_story.py``; it writes
``docs/images/bias_flagged_star.jpg`` and ``docs/images/trust_biased_rebalanced.jpg``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import camlens
from camlens.data import load_dataset
from camlens.data.scenes import LABELS, scenes, with_frames, write_dataset
from camlens.evaluate.bias import bias_audit, bias_examples, bias_summary
from camlens.evaluate.regions import parse_region
from camlens.evaluate.trust import compare_models, trust_sheet, trust_summary

IMAGES = Path(__file__).resolve().parent / "images"


def main() -> None:
    work = Path(tempfile.mkdtemp())
    try:
        samples = load_dataset(write_dataset(with_frames(scenes(200, seed=2026), "star"), work / "scenes"))
        models = [camlens.load("scenes-biased"), camlens.load("scenes-rebalanced")]
        star = LABELS.index("star")
        for model in models:
            for method in ("gradcam", "layercam", "liftcam"):
                records = bias_audit(model, samples, work / f"{model.name}-{method}", method=method,
                                     regions=[parse_region("frame=border:3")], progress=False)
                for row in bias_summary(records, model.class_names):
                    print(f"{model.name:18} {method:9} {row['name']:9} object {row['energy_object']:.2f} "
                          f"frame {row['energy:frame']:.2f} {'FLAGGED' if row['flagged'] else ''}")
                if model.name == "scenes-biased" and method == "gradcam":
                    sheet = bias_examples(model, samples, records, star, work, count=3)
                    shutil.copy(sheet, IMAGES / "bias_flagged_star.jpg")
        records = compare_models(models, samples, work / "trust", progress=False)
        for row in trust_summary(records):
            print(row)
        shutil.copy(trust_sheet(models, samples, records, work / "trust", count=3), IMAGES / "trust_biased_rebalanced.jpg")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
