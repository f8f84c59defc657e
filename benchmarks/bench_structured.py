"""Do maps of structured outputs point at the right object? One table, every method side by side.

On held-out synthetic scenes (``camlens.data.scenes``, seed 2026), where each caption word, question,
class and box names one object whose pixels are known, the four scene models are explained at
their last convolutional layer (``backbone.layer4``):

- classes: each label a scene holds (a shape or a colour) by the multi-label classifier;
- caption words: each colour and shape word of the caption, teacher-forced, by the captioner;
- VQA answers: the answer to each question, by the question-answering model;
- boxes: each object's box, by the detector (the score of the detection that matches it).

Pointing game: the map's maximum on the object's pixels, within 15 px × 64/224 ≈ 4.3 px. Energy:
the share of the map inside the object's box. Targets for Grad-CAM: ≥ 90% hits for classes,
answers and boxes, ≥ 85% for caption words. The models' held-out accuracies come first; models
ship with camlens (trained by ``camlens.models.scene_training``, under a minute each).

    python benchmarks/bench_structured.py [--scenes 200]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from camlens.data.scenes import scenes
from camlens.evaluate.scenes import point_at_objects
from camlens.models.scene_training import accuracy, load_scene_model

METHODS = ("gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "liftcam", "ablationcam", "scorecam")
COLUMNS = {"classifier": "classes", "captioner": "caption words", "vqa": "VQA answers", "detector": "boxes"}
GOALS = {"classifier": 0.90, "captioner": 0.85, "vqa": 0.90, "detector": 0.90}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--out", default="benchmarks/results/structured.json")
    parser.add_argument("--device", default="cpu", help="where the maps are computed (cpu, cuda); models train on the CPU")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, maps on {args.device}\n")
    held_out = scenes(args.scenes, seed=2026)
    results, rows = {}, {}
    for task in COLUMNS:
        start = time.perf_counter()
        model = load_scene_model(task)
        loaded = time.perf_counter() - start
        scores = accuracy(task, model, held_out)
        print(f"scene {task:10s} held-out " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
              + f"  (loaded or trained in {loaded:.0f} s)")
        start = time.perf_counter()
        results[task] = point_at_objects(task, model.to(args.device), held_out, METHODS, progress=False)
        rows[task] = results[task][METHODS[0]]["rows"]
        print(f"  {rows[task]} maps per method on {args.scenes} scenes in {time.perf_counter() - start:.0f} s")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1), encoding="utf-8")  # as it goes

    header = "| method | " + " | ".join(f"{COLUMNS[t]}: pointing ↑ | energy ↑" for t in COLUMNS) + " |"
    print("\n" + header + "\n|" + "---|" * (1 + 2 * len(COLUMNS)))
    for method in METHODS:
        cells = [f"{results[t][method]['pointing']:.3f} | {results[t][method]['energy']:.3f}" for t in COLUMNS]
        print(f"| {method} | " + " | ".join(cells) + " |")
    print("\n" + ", ".join(f"{COLUMNS[t]} {rows[t]} maps" for t in COLUMNS) + f" on {args.scenes} scenes")
    for task, goal in GOALS.items():
        reached = results[task]["gradcam"]["pointing"]
        print(f"Grad-CAM pointing, {COLUMNS[task]}: {reached:.3f} (target ≥ {goal:.2f}) {'met' if reached >= goal else 'MISSED'}")


if __name__ == "__main__":
    main()
