"""Gradient CAM methods: camlens against pytorch-grad-cam, torchcam and captum, side by side.

Every tool explains the top-1 class of the same inputs, in the same process, in interleaved
rounds (so that drift of the machine hits every tool alike); the median of the rounds is kept.
Ratios are to the *floor*: one forward pass with autograd on, and ``torch.autograd.grad`` of the
class scores to the layer's output, which any gradient CAM method must at least do.

Peak memory is measured in a fresh subprocess per tool: the kernel's high-water mark of the
resident set (reset through /proc/self/clear_refs) minus the resident set before the call, with
glibc returning freed large blocks to the system at once (MALLOC_MMAP_THRESHOLD_) so that the
high-water mark reflects live tensors. It is compared to a plain forward under inference_mode.

    python benchmarks/bench_gradient_methods.py                 # ResNet-50 and VGG-16, batch 1 and 8
    python benchmarks/bench_gradient_methods.py --quick         # batch 1 only, two rounds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Callable

import torch
import torchvision

import camlens

from _harness import memory_supported, peak_in_subprocess, peak_tracker, time_interleaved

SIX = ("cam", "gradcam", "gradcampp", "xgradcam", "layercam", "hirescam")
MODELS = {"resnet50": "layer4", "vgg16": "features.29"}
# CAM is only defined for a GAP → linear head; VGG-16's head (max-pool, three linear layers) is not one.
HAS_CAM = {"resnet50": True, "vgg16": False}


def methods_for(model_name: str) -> tuple[str, ...]:
    return SIX if HAS_CAM[model_name] else tuple(m for m in SIX if m != "cam")


def build(model_name: str) -> tuple[torch.nn.Module, str, torch.nn.Module]:
    torch.manual_seed(0)
    model = getattr(torchvision.models, model_name)().eval()
    layer = MODELS[model_name]
    return model, layer, model.get_submodule(layer)


def floor(model: torch.nn.Module, module: torch.nn.Module) -> Callable[[torch.Tensor], object]:
    """Forward with autograd, then autograd.grad of the top-1 scores to the layer output."""

    def run(images: torch.Tensor) -> object:
        recorded = []
        handle = module.register_forward_hook(lambda m, i, o: recorded.append(o))
        try:
            logits = model(images)
        finally:
            handle.remove()
        score = logits.gather(1, logits.argmax(dim=1, keepdim=True)).sum()
        return torch.autograd.grad(score, recorded[-1])

    return run


def camlens_tool(model, layer, methods) -> Callable[[torch.Tensor], object]:
    return lambda images: camlens.explain(model, images, layer=layer, methods=methods)


def pytorch_grad_cam_tool(model, module, method: str) -> Callable[[torch.Tensor], object]:
    import pytorch_grad_cam as pgc

    cls = {"gradcam": pgc.GradCAM, "gradcampp": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM,
           "layercam": pgc.LayerCAM, "hirescam": pgc.HiResCAM}[method]

    def run(images):
        with cls(model=model, target_layers=[module]) as cam:
            return cam(input_tensor=images, targets=None)

    return run


def torchcam_tool(model, layer, method: str) -> Callable[[torch.Tensor], object]:
    from torchcam import methods as tc

    cls = {"gradcam": tc.GradCAM, "gradcampp": tc.GradCAMpp, "xgradcam": tc.XGradCAM, "layercam": tc.LayerCAM}[method]

    def run(images):
        with cls(model, target_layer=layer, input_shape=tuple(images.shape[1:])) as extractor:
            logits = model(images)
            return extractor(logits.argmax(dim=1).tolist(), logits)

    return run


def captum_tool(model, module) -> Callable[[torch.Tensor], object]:
    from captum.attr import LayerAttribution, LayerGradCam

    def run(images):
        target = model(images).argmax(dim=1).tolist()  # captum needs the class up front: one extra forward
        cams = LayerGradCam(model, module).attribute(images, target=target, relu_attributions=True)
        return LayerAttribution.interpolate(cams, tuple(images.shape[-2:]), interpolate_mode="bilinear")

    return run


def inference_forward(model) -> Callable[[torch.Tensor], object]:
    def run(images):
        with torch.inference_mode():
            return model(images)

    return run


def tools(model, layer, module, methods, with_six_peers: bool) -> dict[str, Callable[[torch.Tensor], object]]:
    table = {"floor": floor(model, module)}
    for method in methods:
        table[f"camlens {method}"] = camlens_tool(model, layer, (method,))
    table["camlens all six"] = camlens_tool(model, layer, methods)
    table["pytorch-grad-cam gradcam"] = pytorch_grad_cam_tool(model, module, "gradcam")
    table["torchcam gradcam"] = torchcam_tool(model, layer, "gradcam")
    table["captum gradcam"] = captum_tool(model, module)
    if with_six_peers:  # the five gradient methods each peer has, one full pass each
        pgc = [pytorch_grad_cam_tool(model, module, m) for m in SIX if m != "cam"]
        table["pytorch-grad-cam five of six"] = lambda images: [run(images) for run in pgc]
        tc = [torchcam_tool(model, layer, m) for m in ("gradcam", "gradcampp", "xgradcam", "layercam")]
        table["torchcam four of six"] = lambda images: [run(images) for run in tc]
    return table


def time_tools(table: dict[str, Callable], images: torch.Tensor, rounds: int) -> dict[str, list[float]]:
    return time_interleaved({name: (lambda run=run: run(images)) for name, run in table.items()}, rounds)


def probe(model_name: str, batch: int, tool: str) -> None:
    model, layer, module = build(model_name)
    images = torch.randn(batch, 3, 224, 224)
    table = tools(model, layer, module, methods_for(model_name), with_six_peers=False)
    table["forward (inference_mode)"] = inference_forward(model)
    run = table[tool]
    run(images[:1])  # warm-up at batch 1: lazy initialization without caching batch-size buffers
    with peak_tracker() as result:
        run(images)
    print(json.dumps(result))


def measure_memory(model_name: str, batch: int, names: list[str]) -> dict[str, float]:
    return {name: peak_in_subprocess(__file__, [model_name, str(batch), name]) for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50,vgg16")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="batch 1 only, 2 rounds, no memory")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--probe", nargs=3, metavar=("MODEL", "BATCH", "TOOL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(args.probe[0], int(args.probe[1]), args.probe[2])
        return
    if args.quick:
        args.batches, args.rounds, args.no_memory = "1", 2, True
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, camlens {camlens.__version__}")
    for model_name in args.models.split(","):
        model, layer, module = build(model_name)
        for batch in (int(b) for b in args.batches.split(",")):
            images = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(batch))
            rounds = args.rounds if batch == 1 else max(2, args.rounds // 2)
            methods = methods_for(model_name)
            samples = time_tools(tools(model, layer, module, methods, with_six_peers=True), images, rounds)
            times = {name: statistics.median(values) for name, values in samples.items()}
            fastest = {name: min(values) for name, values in samples.items()}
            base = times["floor"]
            print(f"\n{model_name} ({layer}), batch {batch}, median of {rounds} rounds (and the ratio of fastest rounds)")
            if len(methods) < len(SIX):
                print("  (cam is not defined for this head, so 'all six' means the five other methods)")
            print(f"  {'tool':32s} {'seconds':>9s} {'× floor':>8s} {'(min/min)':>10s}")
            for name, seconds in times.items():
                print(f"  {name:32s} {seconds:9.3f} {seconds / base:8.2f} {fastest[name] / fastest['floor']:10.2f}")
            singles = [times[f"camlens {m}"] / base for m in methods]
            print(f"  camlens: slowest single method {max(singles):.2f}× floor (target ≤ 1.10); "
                  f"all six together {times['camlens all six'] / base:.2f}× (target ≤ 1.15)")
            print(f"  speed-up of camlens gradcam: {times['pytorch-grad-cam gradcam'] / times['camlens gradcam']:.2f}× vs "
                  f"pytorch-grad-cam, {times['torchcam gradcam'] / times['camlens gradcam']:.2f}× vs torchcam, "
                  f"{times['captum gradcam'] / times['camlens gradcam']:.2f}× vs captum; all six: "
                  f"{times['pytorch-grad-cam five of six'] / times['camlens all six']:.2f}× faster than pytorch-grad-cam's five")
    if args.no_memory or not memory_supported():
        return
    names = ["forward (inference_mode)", "floor", "camlens gradcam", "camlens all six",
             "pytorch-grad-cam gradcam", "torchcam gradcam", "captum gradcam"]
    for model_name in args.models.split(","):
        peaks = measure_memory(model_name, 8, names)
        base = peaks["forward (inference_mode)"]
        print(f"\npeak extra memory, {model_name} batch 8 (fresh process per tool)")
        print(f"  {'tool':32s} {'MiB':>9s} {'× forward':>10s}")
        for name, mib in peaks.items():
            print(f"  {name:32s} {mib:9.1f} {mib / base:10.2f}")
        print(f"  camlens all six: {peaks['camlens all six'] / base:.2f}× a plain forward (target ≤ 1.3)")


if __name__ == "__main__":
    main()
