"""A vision transformer and a CNN trained on the same scenes: do their maps point at the object?

Both models do the scene classifier's task (which shapes and colours a scene holds; see
``camlens.data.scenes``): ``scenes-classifier`` (a CNN, explained at its last block) and
``scenes-vit`` (a small ViT with a convolutional stem and 8×8 patch tokens, explained at what
``layer="auto"`` picks: its last block's first norm). On held-out scenes (seed 2026) every label a
scene holds is explained by every method, and the pointing game (the map's maximum on the
object's pixels, within 15 px × 64/224) and its energy variant (the share of the map inside the
object's box) are printed side by side; attention rollout and gradient-weighted rollout need a
transformer's attention and are measured on the ViT only. The models' held-out accuracy and how
long the ViT takes to train come first (trained weights ship with camlens; ``--train`` trains the
ViT again to time it).

    python benchmarks/bench_vit_scenes.py [--scenes 200] [--train]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from camlens.data.scenes import scenes
from camlens.evaluate.scenes import point_at_objects
from camlens.models.scene_training import Recipe, accuracy, load_scene_model, train
from camlens.models.scenes import LAYER
from camlens.models.zoo import SCENE_VIT_LAYER

SHARED = ("gradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "ablationcam", "liftcam", "scorecam")
ATTENTION = ("rollout", "gradient_rollout")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--train", action="store_true", help="train the ViT again and report the time")
    parser.add_argument("--out", default="benchmarks/results/vit_scenes.json")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    held_out = scenes(args.scenes, seed=2026)
    if args.train:
        start = time.perf_counter()
        train(Recipe("vit"), progress=False)
        print(f"scene ViT trained in {time.perf_counter() - start:.0f} s (recipe {Recipe('vit').key()})")
    models = {"CNN": ("classifier", load_scene_model("classifier"), LAYER, SHARED),
              "ViT": ("vit", load_scene_model("vit"), SCENE_VIT_LAYER, SHARED + ATTENTION)}
    results = {}
    for name, (task, model, layer, methods) in models.items():
        scores = accuracy(task, model, held_out)
        print(f"{name}: held-out " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()) + f"; explained at {layer}")
        start = time.perf_counter()
        results[name] = point_at_objects(task, model, held_out, methods, progress=False, layer=layer)
        print(f"  {results[name][methods[0]]['rows']} maps per method in {time.perf_counter() - start:.0f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1), encoding="utf-8")
    print("\n| method | CNN: pointing ↑ | energy ↑ | ViT: pointing ↑ | energy ↑ |\n|---|---|---|---|---|")
    for method in SHARED + ATTENTION:
        cells = [f"{results[m][method]['pointing']:.3f} | {results[m][method]['energy']:.3f}" if method in results[m]
                 else "– | –" for m in models]
        print(f"| {method} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
