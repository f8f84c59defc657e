"""``camlens evaluate`` on real photos with EfficientNet-Lite0: throughput, the summary tables, and
what deletion + insertion cost beyond the forward passes they need.

    python benchmarks/bench_evaluate.py                         # 100 photos of imagenet_sample_1000,
                                                                # then the 21 of imagenet_val_bbox
    python benchmarks/bench_evaluate.py --photos 20 --skip-localization
    python benchmarks/bench_evaluate.py --throughput --photos 24   # images/s against an earlier revision

Needs the shared data (CAMLENS_DATA, default ../shared/data). Results (per-image JSONL, summary
tables, mean curves) go under --out; a rerun resumes them unless --restart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

import camlens
from camlens import load, read_image
from camlens.data import load_dataset
from camlens.evaluate import Protocol, evaluate
from camlens.metrics import faithfulness

from _harness import ROOT, revision, run_camlens, time_interleaved

DATA = Path(os.environ.get("CAMLENS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
BASELINE = "20c9396"  # the last revision that evaluated image by image through the model as given
SIX_AND_LIFTCAM = "cam,gradcam,gradcampp,xgradcam,layercam,hirescam,liftcam"
FAITHFULNESS_METHODS = ("gradcam", "gradcampp", "xgradcam", "scorecam", "ablationcam", "liftcam")
LOCALIZATION_METHODS = ("cam", "gradcam", "gradcampp", "xgradcam", "layercam", "ablationcam", "liftcam")


class _TimedModel(torch.nn.Module):
    """The model, counting the seconds spent inside its forward passes."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.seconds = model, 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        try:
            return self.model(x)
        finally:
            self.seconds += time.perf_counter() - start


def curve_overhead(zoo, samples, steps: int, batch_size: int) -> None:
    """What deletion + insertion of four methods' maps of one image cost beyond the forward passes
    they need, measured two ways: against the seconds spent inside those very forward passes (the
    overhead of building the images and scoring them), and against a plain loop of the same number
    of forwards at the same batch size on a random batch."""
    inside, plain_ratios = [], []
    timed = _TimedModel(zoo.model)
    for sample in samples:
        image = zoo.preprocessing(read_image(sample.path))[None]
        explanation = camlens.explain(zoo.model, image, layer=zoo.layer, methods=("gradcam", "gradcampp", "xgradcam", "layercam"))
        maps = torch.stack([explanation.maps[m][0] for m in explanation.methods])
        images = image.expand(maps.shape[0], -1, -1, -1)
        classes = explanation.targets[:1].expand(maps.shape[0])
        count = 2 * maps.shape[0] * (steps + 1)
        batch = torch.randn(batch_size, *image.shape[1:])
        in_forwards: list[float] = []

        def curves() -> None:
            timed.seconds = 0.0
            faithfulness.deletion_insertion(timed, images, maps, classes, steps=steps, batch_size=batch_size)
            in_forwards.append(timed.seconds)

        def forwards() -> None:
            with torch.inference_mode():
                for start in range(0, count, batch_size):
                    zoo.model(batch[: min(batch_size, count - start)])

        timings = time_interleaved({"curves": curves, "forwards": forwards}, rounds=3)
        total, plain = statistics.median(timings["curves"]), statistics.median(timings["forwards"])
        inside.append(statistics.median(t / f for t, f in zip(timings["curves"], in_forwards[1:])))
        plain_ratios.append(total / plain)
        print(f"  {sample.path.name}: curves {total:.2f} s, of which in forwards {statistics.median(in_forwards[1:]):.2f} s; "
              f"plain loop of {count} forwards {plain:.2f} s", flush=True)
    print(f"  deletion + insertion ({steps} steps, {maps.shape[0]} maps, {count} forwards per image, batch {batch_size}), "
          f"median of {len(inside)} photos (target ≤ 1.2):\n"
          f"    {statistics.median(inside):.3f}× the seconds inside its own forward passes\n"
          f"    {statistics.median(plain_ratios):.3f}× a plain loop of as many forwards", flush=True)


def run(zoo, dataset: Path, count: int, methods, groups, out: Path, steps: int, batch_size: int, restart: bool) -> None:
    samples = load_dataset(dataset)[:count]
    start = time.perf_counter()
    summary = evaluate(zoo, samples, methods, out, groups=groups, protocol=Protocol(steps=steps), batch_size=batch_size,
                       resume=not restart, diagnose=True)
    seconds = time.perf_counter() - start
    print(f"\n{len(samples)} images of {dataset.parent.name}, {', '.join(groups)}: {seconds:.0f} s "
          f"({len(samples) / seconds:.3f} images/s; counts only what this run computed, see --restart)\n")
    print(summary.markdown())


def throughput(count: int, baseline: str) -> None:
    """``camlens evaluate`` of the six gradient methods and LIFT-CAM with faithfulness and axioms on
    ``count`` photos, from this checkout and from ``baseline``, each a fresh process. Images/s
    counts the work after loading: the slope between a run on one photo and one on all."""
    import shutil
    import tempfile

    dataset = str(DATA / "imagenet_sample_1000" / "labels.csv")
    command = ["evaluate", dataset, "--methods", SIX_AND_LIFTCAM, "--metrics", "faithfulness,axioms", "--restart"]
    work = Path(tempfile.mkdtemp(prefix="camlens-bench-evaluate-"))
    rates = {}
    try:
        with revision(baseline, work / "baseline") as old:
            print(f"camlens evaluate, EfficientNet-Lite0, {SIX_AND_LIFTCAM}, faithfulness + axioms, "
                  f"{os.cpu_count()} CPU cores, {count} photos of imagenet_sample_1000")
            for name, source in ((f"baseline {baseline}", old), ("this checkout", ROOT)):
                one, _ = run_camlens(source, [*command, "--limit", "1", "--out", str(work / "one")])
                seconds, peak = run_camlens(source, [*command, "--limit", str(count), "--out", str(work / "all")])
                rates[name] = (count - 1) / max(seconds - one, 1e-9)
                print(f"  {name:24s} {seconds:7.1f} s for {count}, {one:5.1f} s for 1: {rates[name]:6.3f} images/s "
                      f"after loading, peak RSS {peak:6.0f} MiB", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    old_rate, new_rate = rates.values()
    print(f"this checkout / baseline: {new_rate / old_rate:.2f}× images/s (target ≥ 3×)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default="benchmarks/results/evaluate")
    parser.add_argument("--restart", action="store_true", help="recompute everything instead of resuming")
    parser.add_argument("--skip-localization", action="store_true")
    parser.add_argument("--throughput", action="store_true",
                        help="only compare images/s with --baseline, as the camlens command")
    parser.add_argument("--baseline", default=BASELINE, help="git revision to compare with (default: %(default)s)")
    args = parser.parse_args()
    if not (DATA / "imagenet_sample_1000" / "labels.csv").exists():
        raise SystemExit(f"no shared data at {DATA}: set CAMLENS_DATA")
    if args.throughput:
        throughput(args.photos, args.baseline)
        return
    torch.set_num_threads(os.cpu_count() or 1)
    zoo = load("efficientnet-lite0")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, camlens {camlens.__version__}, "
          f"EfficientNet-Lite0 at {zoo.layer}")
    sample_csv = DATA / "imagenet_sample_1000" / "labels.csv"
    curve_overhead(zoo, load_dataset(sample_csv)[:5], args.steps, args.batch_size)
    run(zoo, sample_csv, args.photos, FAITHFULNESS_METHODS, ("faithfulness", "axioms"), Path(args.out) / "faithfulness",
        args.steps, args.batch_size, args.restart)
    if not args.skip_localization:
        run(zoo, DATA / "imagenet_val_bbox" / "annotations.csv", 21, LOCALIZATION_METHODS, ("localization",),
            Path(args.out) / "localization", args.steps, args.batch_size, args.restart)


if __name__ == "__main__":
    main()
