"""README's adversarial-noise table on synthetic scenes: 200 held-out scenes (each labelled with its
first object's shape, boxed), ``scenes-classifier`` attacked at ε = 4 and 8 (in 1/255), every
gradient and after-layer method; the means over all photos and over the photos whose attack
succeeded. Run from the checkout: ``.venv/bin/python docs/robustness_scenes.py`` (a few minutes on
2 CPU cores).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import camlens
from camlens.data import load_dataset
from camlens.data.scenes import scenes, write_dataset
from camlens.evaluate.adversarial import robustness, robustness_summary

METHODS = ("gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "ablationcam", "liftcam")


def main() -> None:
    work = Path(tempfile.mkdtemp())
    samples = load_dataset(write_dataset(scenes(200, seed=2026), work / "scenes"))
    records = robustness(camlens.load("scenes-classifier"), samples, METHODS, work / "out", epsilons=(4, 8),
                         progress=False)
    print("| ε | method | success (n) | pointing clean → attacked | energy clean → attacked | correlation "
          "| on successes: pointing | energy | correlation |")
    for row in robustness_summary(records):
        print(f"| {row['epsilon']} | {row['method']} | {row['attack_success']:.2f} ({row['successes']}) "
              f"| {row['pointing_clean']:.3f} → {row['pointing_adversarial']:.3f} "
              f"| {row['energy_clean']:.2f} → {row['energy_adversarial']:.2f} | {row['map_correlation']:.2f} "
              f"| {row['pointing_clean_succeeded']:.3f} → {row['pointing_adversarial_succeeded']:.3f} "
              f"| {row['energy_clean_succeeded']:.2f} → {row['energy_adversarial_succeeded']:.2f} "
              f"| {row['map_correlation_succeeded']:.2f} |")


if __name__ == "__main__":
    main()
