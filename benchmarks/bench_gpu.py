"""camlens on a CUDA GPU against its floor and against pytorch-grad-cam, torchcam and captum.

torchvision ResNet-50 (``layer4``) and VGG-16 (``features.29``), random weights, batches 1, 8 and
64, TF32 off, every entry timed with CUDA events after a warm-up, in interleaved rounds (so that
drift of the clock hits every entry alike), the median kept. The *floor* is what any gradient CAM
method must do: a forward with autograd on and ``torch.autograd.grad`` of the top-1 scores to the
layer. Peak memory is ``torch.cuda.max_memory_allocated`` above what was allocated before the call.

Goals (issue "whole datasets on any device"): one gradient method ≤ 1.10× the floor at batches 8
and 64 and ≤ 1.3× at batch 1; all six in one call ≤ 1.15×; LIFT-CAM ≤ 1.3× Grad-CAM; Ablation-CAM
≥ 100× pytorch-grad-cam's at batch 1; Score-CAM ≥ 2× the fastest peer; peak memory ≤ 1.1× the
floor's. Without a CUDA device the script says so, prints the CPU ratios at batch 1 and exits 0.

    python benchmarks/bench_gpu.py [--rounds 15] [--out benchmarks/results/gpu.json]
    python benchmarks/bench_gpu.py --device cpu --batches 1 --rounds 1   # the same tables on the CPU
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_gradient_methods import build, methods_for, tools

import camlens

BATCHES = (1, 8, 64)


def cuda_times(table: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median milliseconds per call of each entry, by CUDA events, after one warm-up call each."""
    for run in table.values():
        run()
    torch.cuda.synchronize()
    samples: dict[str, list[float]] = {name: [] for name in table}
    order = list(table)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            table[name]()
            end.record()
            end.synchronize()
            samples[name].append(start.elapsed_time(end))
    return {name: statistics.median(values) for name, values in samples.items()}


def cpu_times(table: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    import time

    for run in table.values():
        run()
    samples: dict[str, list[float]] = {name: [] for name in table}
    for _ in range(rounds):
        for name, run in table.items():
            start = time.perf_counter()
            run()
            samples[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in samples.items()}


def peak_mib(run: Callable[[], object]) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    result = run()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    del result
    return peak / 2 ** 20


def camlens_call(model, layer, methods, autocast: torch.dtype | None = None) -> Callable[[torch.Tensor], object]:
    return lambda images: camlens.explain(model, images, layer=layer, methods=methods, autocast=autocast)


def autocast_error(model, layer, images: torch.Tensor, dtype: torch.dtype) -> float:
    """The largest difference between Grad-CAM's maps at ``dtype`` and in float32, both min–max
    normalized per map (so 1.0 would be a map turned inside out)."""
    full = camlens.explain(model, images, layer=layer, methods="gradcam").maps["gradcam"]
    low = camlens.explain(model, images, layer=layer, methods="gradcam", autocast=dtype).maps["gradcam"]
    return float((camlens.normalize(full) - camlens.normalize(low)).abs().max())


def slow_peers(model, layer, module) -> dict[str, Callable[[torch.Tensor], object]]:
    """Ablation-CAM and Score-CAM, camlens and the peers that have them."""
    import pytorch_grad_cam as pgc
    from torchcam import methods as tc

    def pgc_run(cls):
        def run(images):
            with cls(model=model, target_layers=[module]) as cam:
                return cam(input_tensor=images, targets=None)
        return run

    def torchcam_score(images):
        with tc.ScoreCAM(model, target_layer=layer, input_shape=tuple(images.shape[1:])) as extractor:
            with torch.no_grad():
                logits = model(images)
            return extractor(logits.argmax(dim=1).tolist(), logits)

    return {"camlens ablationcam": camlens_call(model, layer, ("ablationcam",)),
            "pytorch-grad-cam ablationcam": pgc_run(pgc.AblationCAM),
            "camlens scorecam": camlens_call(model, layer, ("scorecam",)),
            "pytorch-grad-cam scorecam": pgc_run(pgc.ScoreCAM),
            "torchcam scorecam": torchcam_score}


def print_table(title: str, times: dict[str, float], floor: str, peaks: dict[str, float] | None = None) -> None:
    print(f"\n{title}\n| entry | ms | × {floor} |" + (" peak MiB | × floor's |" if peaks else ""))
    print("|---|---|---|" + ("---|---|" if peaks else ""))
    for name, ms in times.items():
        row = f"| {name} | {ms:.2f} | {ms / times[floor]:.2f} |"
        if peaks:
            row += f" {peaks[name]:.0f} | {peaks[name] / peaks['floor']:.2f} |"
        print(row)


def evaluate_rate(device: str, count: int) -> float:
    """Images/s of :func:`camlens.evaluate` with ResNet-50 (random weights) on ``device``: the six
    gradient methods and LIFT-CAM, faithfulness and axioms, on the sample photos repeated to
    ``count`` images, after a warm-up run on two of them."""
    import tempfile

    from camlens import Preprocessing, wrap
    from camlens.data import Sample
    from camlens.evaluate import evaluate

    model, layer, _ = build("resnet50")
    loaded = wrap(model.to(device), Preprocessing(256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), layer=layer)
    photos = sorted((Path(__file__).resolve().parents[1] / "examples" / "images").glob("*.jpg"))
    samples = [Sample(photos[i % len(photos)], label=i, id=f"{i:04d}") for i in range(count)]
    methods = (*methods_for("resnet50"), "liftcam")
    with tempfile.TemporaryDirectory() as out:
        evaluate(loaded, samples[:2], methods, Path(out) / "warm-up", progress=False)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        evaluate(loaded, samples, methods, Path(out) / "run", progress=False)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    rate = count / seconds
    print(f"camlens evaluate, ResNet-50 on {device}, {', '.join(methods)}, faithfulness + axioms: "
          f"{count} images in {seconds:.1f} s, {rate:.2f} images/s (target on a GPU ≥ 20)")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--slow-rounds", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/gpu.json")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", type=int, nargs="+", default=BATCHES)
    parser.add_argument("--evaluate-images", type=int, default=64,
                        help="images for the evaluate throughput (0: skip it; default: %(default)s)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, Python {platform.python_version()}")
    results: dict[str, object] = {"torch": torch.__version__}
    on_gpu = args.device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        print("no CUDA device here: GPU ratios not measured; the CPU ratios at batch 1 follow")
        model, layer, module = build("resnet50")
        images = torch.randn(1, 3, 224, 224)
        table = tools(model, layer, module, methods_for("resnet50"), with_six_peers=False)
        table["camlens liftcam"] = camlens_call(model, layer, ("liftcam",))
        times = cpu_times({name: (lambda run=run: run(images)) for name, run in table.items()}, 3)
        print_table("resnet50, batch 1, CPU", times, "floor")
        results["cpu"] = times
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1), encoding="utf-8")
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    timer = cuda_times if on_gpu else cpu_times
    results["device"] = torch.cuda.get_device_name() if on_gpu else "cpu"
    print(f"device {results['device']}, TF32 off")
    if args.evaluate_images:
        results["evaluate images/s"] = evaluate_rate(args.device, args.evaluate_images)
    for name in ("resnet50", "vgg16"):
        model, layer, module = build(name)
        model = model.to(args.device)
        module = model.get_submodule(layer)
        for batch in args.batches:
            images = torch.randn(batch, 3, 224, 224, device=args.device)
            table = tools(model, layer, module, methods_for(name), with_six_peers=False)
            table["camlens liftcam"] = camlens_call(model, layer, ("liftcam",))
            table["camlens gradcam, bf16 autocast"] = camlens_call(model, layer, ("gradcam",), torch.bfloat16)
            calls = {entry: (lambda run=run, images=images: run(images)) for entry, run in table.items()}
            times = timer(calls, args.rounds)
            peaks = {entry: peak_mib(call) for entry, call in calls.items()} if on_gpu else None
            print_table(f"{name}, batch {batch}", times, "floor", peaks)
            print(f"LIFT-CAM / Grad-CAM: {times['camlens liftcam'] / times['camlens gradcam']:.2f}")
            errors = {str(dtype): autocast_error(model, layer, images, dtype) for dtype in (torch.bfloat16, torch.float16)}
            print("autocast, max |normalized map − float32's|: " + ", ".join(f"{k} {v:.4f}" for k, v in errors.items()))
            results[f"{name} b{batch}"] = {"ms": times, "peak_mib": peaks, "autocast_error": errors}
        images = torch.randn(1, 3, 224, 224, device=args.device)
        slow = slow_peers(model, layer, module)
        times = timer({entry: (lambda run=run, images=images: run(images)) for entry, run in slow.items()}, args.slow_rounds)
        print_table(f"{name}, batch 1, perturbation methods", times, "camlens ablationcam")
        print(f"Ablation-CAM: pytorch-grad-cam / camlens = "
              f"{times['pytorch-grad-cam ablationcam'] / times['camlens ablationcam']:.1f}×")
        fastest = min(times["pytorch-grad-cam scorecam"], times["torchcam scorecam"])
        print(f"Score-CAM: fastest peer / camlens = {fastest / times['camlens scorecam']:.1f}×")
        results[f"{name} perturbation b1"] = times
        del model
        if on_gpu:
            torch.cuda.empty_cache()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
