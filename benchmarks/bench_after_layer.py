"""The network after the layer: Ablation-CAM, Score-CAM, LIFT-CAM and Shapley sampling, side by side
with pytorch-grad-cam and torchcam, batch 1, on torchvision ResNet-50 (layer4) and VGG-16
(features.29) with random weights (the comparison is of work done, not of what the maps show).

Fast Score-CAM's agreement with exact Score-CAM is measured on real photos with a real pretrained
model: EfficientNet-Lite0 on 50 photos of the shared data's imagenet_sample_1000 (CAMLENS_DATA).

    python benchmarks/bench_after_layer.py                  # everything (about 25 minutes)
    python benchmarks/bench_after_layer.py --skip-peers     # camlens only, no slow peers
    python benchmarks/bench_after_layer.py --shapley-only   # Shapley sampling on MobileNetV2, against before
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from scipy.stats import spearmanr

import camlens

from _harness import ROOT, memory_supported, peak_in_subprocess, peak_tracker, revision, time_interleaved

MODELS = {"resnet50": "layer4", "vgg16": "features.29"}
CHUNK = 16  # images per forward pass for Score-CAM, ours and the peers' (pytorch-grad-cam uses 16)
DATA = Path(os.environ.get("CAMLENS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return getattr(torchvision.models, name)().eval()


def once(run) -> tuple[float, object]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def pgc_weights(cls, model, layer, images, **kwargs) -> tuple[float, np.ndarray]:
    """pytorch-grad-cam's channel weights (captured from its get_cam_weights) and its time."""
    captured = []
    with cls(model=model, target_layers=[model.get_submodule(layer)], **kwargs) as cam:
        original = cam.get_cam_weights
        cam.get_cam_weights = lambda *a, **k: captured.append(original(*a, **k)) or captured[-1]
        seconds, _ = once(lambda: cam(input_tensor=images, targets=None))
    return seconds, np.asarray(captured[-1])


def ablation(name: str, images: torch.Tensor, peers: bool) -> None:
    import pytorch_grad_cam as pgc

    model, layer = build(name), MODELS[name]
    ours = time_interleaved({"camlens": lambda: camlens.explain(model, images, layer=layer, methods="ablationcam")}, 3)
    seconds = statistics.median(ours["camlens"])
    weights = camlens.explain(model, images, layer=layer, methods="ablationcam").weights["ablationcam"][0]
    print(f"  Ablation-CAM  camlens {seconds:8.2f} s", end="")
    if peers:
        theirs, their_weights = pgc_weights(pgc.AblationCAM, model, layer, images)
        difference = float(np.abs(their_weights[0] - weights.numpy()).max() / np.abs(their_weights[0]).max())
        print(f" | pytorch-grad-cam {theirs:8.2f} s | {theirs / seconds:7.1f}× faster (target ≥ 100); "
              f"weights differ by {difference:.1e} of their largest")
    else:
        print()


def scorecam(name: str, images: torch.Tensor, peers: bool) -> float:
    model, layer = build(name), MODELS[name]
    ours, result = once(lambda: camlens.explain(model, images, layer=layer, methods="scorecam", batch_size=CHUNK))
    skipped = int((result.weights["scorecam"][0] == 0).sum())
    line = f"  Score-CAM     camlens {ours:8.2f} s ({skipped} constant channels skipped)"
    if peers:
        import pytorch_grad_cam as pgc
        from torchcam.methods import ScoreCAM

        theirs_pgc, _ = pgc_weights(pgc.ScoreCAM, model, layer, images)

        def torchcam_run():
            with ScoreCAM(model, target_layer=layer, batch_size=CHUNK, input_shape=tuple(images.shape[1:])) as extractor:
                logits = model(images)
                return extractor(logits.argmax(dim=1).tolist(), logits)

        theirs_tc, _ = once(torchcam_run)
        faster_peer = min(theirs_pgc, theirs_tc)
        line += (f" | pytorch-grad-cam {theirs_pgc:8.2f} s | torchcam {theirs_tc:8.2f} s | "
                 f"{faster_peer / ours:5.2f}× faster than the faster peer (target ≥ 1.25)")
    print(line)
    return ours


def scorecam_memory(name: str) -> None:
    if not memory_supported():
        return
    ours = peak_in_subprocess(__file__, [name, "scorecam"])
    forward = peak_in_subprocess(__file__, [name, "forward"])
    print(f"  Score-CAM peak extra memory {ours:7.1f} MiB vs one forward at the chunk size ({CHUNK}) "
          f"{forward:7.1f} MiB: {ours / forward:4.2f}× (target ≤ 1.5)")


def probe(name: str, what: str) -> None:
    model, layer = build(name), MODELS[name]
    image = torch.randn(1, 3, 224, 224)
    if what == "forward":
        chunk = torch.randn(CHUNK, 3, 224, 224).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            model(chunk[:1])
            with peak_tracker() as result:
                model(chunk)
    else:
        camlens.explain(model, image, layer=layer, methods="gradcam")
        with peak_tracker() as result:
            camlens.explain(model, image, layer=layer, methods="scorecam", batch_size=CHUNK)
    print(json.dumps(result))


def liftcam_cost(name: str, images: torch.Tensor) -> None:
    model, layer = build(name), MODELS[name]
    samples = time_interleaved({m: (lambda m=m: camlens.explain(model, images, layer=layer, methods=m))
                                for m in ("gradcam", "liftcam")}, 15)
    gradcam, liftcam = (statistics.median(samples[m]) for m in ("gradcam", "liftcam"))
    print(f"  LIFT-CAM {liftcam * 1000:7.1f} ms vs Grad-CAM {gradcam * 1000:7.1f} ms: {liftcam / gradcam:4.2f}× (target ≤ 1.3)")


def shapley_rate(images: torch.Tensor) -> None:
    model, layer = build("vgg16"), MODELS["vgg16"]
    pairs = 2
    seconds, result = once(lambda: camlens.explain(model, images, layer=layer, methods="shapley",
                                                   options={"shapley": {"pairs": pairs}}))
    channels = result.activations.shape[1]
    coalitions = pairs * 2 * (channels + 1)
    ours = coalitions / seconds
    batch = torch.randn(CHUNK, 3, 224, 224)
    with torch.inference_mode():
        model(batch[:1])
        forward_seconds, _ = once(lambda: model(batch))
    full = CHUNK / forward_seconds
    print(f"  Shapley sampling (VGG-16 features.29, {channels} maps): {ours:8.0f} coalitions/s on the network after "
          f"the layer vs {full:6.1f}/s with full forward passes: {ours / full:6.1f}× (target ≥ 50)")


SHAPLEY_BASELINE = "dd04312^"  # the last revision that played every map, null or not, through the whole after-part
MOBILENET_WEIGHTS = "weights_mobilenet_v2/mobilenet_v2_tf2ptq_dequant_fp32_torchvision_layout.pth"


def shapley_probe(pairs: int) -> None:
    """One sampled-Shapley call in float64 on MobileNetV2 at features.17.conv.0 (960 maps) and a
    real photo; prints its seconds and what it computed as JSON (run under either revision)."""
    from camlens import load, read_image

    zoo = load("mobilenet-v2", weights=str(DATA / MOBILENET_WEIGHTS))
    model = zoo.model.eval().double()
    image = zoo.preprocessing(read_image(DATA / "imagenet_sample_1000" / "n01443537_goldfish.JPEG"))[None].double()
    layer = "features.17.conv.0"
    camlens.explain(model, image, layer=layer, methods="gradcam")  # warm-up
    seconds, result = once(lambda: camlens.explain(model, image, layer=layer, methods="shapley",
                                                   options={"shapley": {"pairs": pairs, "exact_up_to": 0}}))
    weights = result.weights["shapley"][0]
    print(json.dumps({"seconds": seconds, "permutations": 2 * pairs, "maps": int(weights.numel()),
                      "players": int(result.activations[0].flatten(1).ne(0).any(dim=1).sum()),
                      "sum": float(weights.sum())}))


def shapley_mobilenet(pairs: int, baseline: str) -> None:
    """Permutations per second of sampled Shapley values, this checkout against ``baseline``,
    each in a fresh process with two threads."""
    import subprocess
    import sys
    import tempfile

    if not (DATA / MOBILENET_WEIGHTS).exists():
        print(f"  Shapley on MobileNetV2: skipped, no weights at {DATA / MOBILENET_WEIGHTS} (set CAMLENS_DATA)")
        return
    rates = {}
    with tempfile.TemporaryDirectory() as work, revision(baseline, Path(work) / "baseline") as old:
        for name, source, count in ((f"baseline {baseline}", old, max(1, pairs // 4)), ("this checkout", ROOT, pairs)):
            completed = subprocess.run([sys.executable, __file__, "--shapley-probe", str(count)], check=True,
                                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(source / "src")))
            result = json.loads(completed.stdout.strip().splitlines()[-1])
            rates[name] = result["permutations"] / result["seconds"]
            print(f"  {name:22s} {result['permutations']:3d} permutations of {result['players']} non-null maps "
                  f"(of {result['maps']}) in {result['seconds']:6.1f} s: {rates[name]:6.2f} permutations/s "
                  f"(sum of the values {result['sum']:.6f})", flush=True)
    old_rate, new_rate = rates.values()
    print(f"  sampled Shapley, MobileNetV2 features.17.conv.0, float64: {new_rate / old_rate:.1f}× permutations/s "
          f"(target ≥ 3)")


def fast_scorecam_agreement(count: int) -> None:
    labels = DATA / "imagenet_sample_1000" / "labels.csv"
    if not labels.exists():
        print(f"  fast Score-CAM agreement: skipped, no real photos at {labels.parent} (set CAMLENS_DATA)")
        return
    from camlens import load, read_image

    zoo = load("efficientnet-lite0")
    rows = list(csv.DictReader(open(labels)))[:count]
    correlations, exact_time, fast_time = [], 0.0, 0.0
    for row in rows:
        image = zoo.preprocessing(read_image(labels.parent / row["filename"]))[None]
        seconds, exact = once(lambda: camlens.explain(zoo.model, image, layer=zoo.layer, methods="scorecam"))
        exact_time += seconds
        seconds, fast = once(lambda: camlens.explain(zoo.model, image, layer=zoo.layer, methods="scorecam_fast"))
        fast_time += seconds
        correlations.append(spearmanr(exact.maps["scorecam"].flatten(), fast.maps["scorecam_fast"].flatten())[0])
    correlations = np.array(correlations)
    print(f"  fast Score-CAM on {count} real photos (EfficientNet-Lite0 {zoo.layer}): {exact_time / fast_time:5.1f}× faster "
          f"than exact (target ≥ 10); Spearman of the maps mean {correlations.mean():.3f}, median "
          f"{np.median(correlations):.3f}, min {correlations.min():.3f} (target ≥ 0.95)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-peers", action="store_true", help="do not run pytorch-grad-cam / torchcam (slow)")
    parser.add_argument("--photos", type=int, default=50)
    parser.add_argument("--shapley-only", action="store_true", help="only Shapley sampling on MobileNetV2")
    parser.add_argument("--pairs", type=int, default=8, help="permutation pairs for the Shapley rate (default: 8)")
    parser.add_argument("--probe", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--shapley-probe", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(*args.probe)
        return
    if args.shapley_probe:
        torch.set_num_threads(2)
        shapley_probe(args.shapley_probe)
        return
    if args.shapley_only:
        shapley_mobilenet(args.pairs, SHAPLEY_BASELINE)
        return
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, camlens {camlens.__version__}")
    images = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    for name in MODELS:
        print(f"\n{name} ({MODELS[name]}), batch 1")
        liftcam_cost(name, images)
        ablation(name, images, not args.skip_peers)
        scorecam(name, images, not args.skip_peers)
        scorecam_memory(name)
    print()
    shapley_rate(images)
    shapley_mobilenet(args.pairs, SHAPLEY_BASELINE)
    fast_scorecam_agreement(args.photos)


if __name__ == "__main__":
    main()
