"""``camlens explain``: overlays per method and class, a grid and the raw maps per image, one
manifest for the run."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch
from tqdm import tqdm

from .. import __version__
from ..data import Box, load_images
from ..engine.layers import LayerSpec
from ..explain import explain
from ..explanation import Explanation
from ..methods import METHODS
from ..metrics.localization import box_from_map
from ..models import LoadedModel
from ..report import draw_box, grid, overlay, render_attribution
from ..targets import NoMatchingDetection
from .common import (
    EXIT_INPUT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    add_device_option,
    add_model_options,
    load_model,
    method_names,
    parse_device,
    subcommand,
    versions,
)
from .queries import build_query, predictions, row_probability

__all__ = ["add_parser", "run", "DEFAULT_METHODS"]

DEFAULT_METHODS = "gradcam,gradcampp,xgradcam,layercam,guided_gradcam"


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


def _print_predictions(stem: str, predicted: list[dict]) -> None:
    cells = "  ".join(f"{i + 1}. {c['name']} ({c['index']}) {c['probability']:.3f}" for i, c in enumerate(predicted))
    print(f"{stem:24s} {cells}")


def run(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, args.weights)
    methods = method_names(args.methods)
    device = parse_device(args.device)
    query = build_query(args, loaded, device)
    layer: LayerSpec = query.layer
    model = query.model.to(device)

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
    failures = [(str(f.path), f.reason) for f in batch.failures]
    for start in progress:
        chunk = list(range(start, min(start + args.batch_size, len(batch.paths))))
        for indices, explanation in _explain_chunk(model, query, batch, chunk, device, layer, methods, failures):
            resolved_layer = explanation.layer
            for offset, index in enumerate(indices):
                path, original, stem = batch.paths[index], batch.originals[index], stems[index]
                rows = (explanation.image_index == offset).nonzero().flatten().tolist()
                predicted, probabilities = predictions(loaded, explanation.outputs, offset)
                record, panels = _write_image(out, stem, path, original, explanation, rows, predicted, probabilities,
                                              loaded, args.boxes)
                records.append(record)
                overview.append(panels)
                overview_titles.append([Path(path).name] + [f"{m}: {record['classes'][0]['name']}" for m in methods])
                _print_predictions(stem, predicted)
    if not records:  # every photo missed its --box: the boxes, not the photos, are wrong
        raise UsageError(failures[-1][1])

    manifest = {
        "camlens": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": ["camlens", *sys.argv[1:]],
        "model": loaded.name,
        "weights": str(args.weights) if args.weights else None,
        "layer": resolved_layer,
        "methods": list(methods),
        **query.description,
        "device": str(device),
        "preprocessing": vars(loaded.preprocessing) if hasattr(loaded.preprocessing, "__dict__") else repr(loaded.preprocessing),
        "images": records,
        "failures": [{"file": file, "reason": reason} for file, reason in failures],
        "versions": versions(),
    }
    grid(overview, overview_titles).save(out / "overview.png")  # one row per image: its first class, every method
    manifest["overview"] = "overview.png"
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(records)} image(s) to {out}/ (manifest.json lists every file)")
    if failures:
        print(f"camlens: {len(failures)} input(s) failed: {', '.join(file for file, _ in failures)}", file=sys.stderr)
        return EXIT_INPUT_FAILED
    return EXIT_OK


def _explain_chunk(model, query, batch, chunk: list[int], device, layer, methods,
                   failures: list[tuple[str, str]]) -> list[tuple[list[int], Explanation]]:
    """The explanation of a chunk of photos, as (photo indices, explanation) pairs. A photo where
    no detection matches a ``--box`` is recorded in ``failures`` and the others go on: the chunk
    is then explained photo by photo. Other errors are usage errors."""
    try:
        inputs, target = query.build(batch.tensor[chunk].to(device), [batch.originals[i] for i in chunk])
        return [(chunk, explain(model, inputs, layer=layer, methods=methods, target=target))]
    except NoMatchingDetection as error:
        if len(chunk) > 1:
            return [pair for index in chunk
                    for pair in _explain_chunk(model, query, batch, [index], device, layer, methods, failures)]
        failures.append((str(batch.paths[chunk[0]]), str(error)))
        print(f"camlens: skipped {batch.paths[chunk[0]]}: {error}", file=sys.stderr)
        return []
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from error


def _progress(iterable, enabled: bool, step: int):
    return tqdm(iterable, desc=f"explaining (batches of {step})", unit="batch", file=sys.stderr, disable=not enabled)


def _write_image(out: Path, stem: str, path: Path, original, explanation: Explanation, rows: list[int],
                 predicted: list[dict], probabilities: torch.Tensor | None, loaded: LoadedModel,
                 boxes: bool) -> tuple[dict, list]:
    """Writes one image's overlays, grid and raw maps; returns its manifest record and the panels
    of its first class (for the overview)."""
    folder = out / stem
    folder.mkdir(parents=True, exist_ok=True)
    box = loaded.preprocessing.crop_box(original.size)
    files, panels, titles, labels, classes = [], [], [], [], []
    for row in rows:
        cls = int(explanation.targets[row])
        name = loaded.class_names[cls] if cls >= 0 else "target"
        probability = row_probability(probabilities, cls)
        position = None if explanation.positions is None else int(explanation.positions[row])
        classes.append({"index": cls, "name": name, "score": float(explanation.scores[row]), "probability": probability}
                       | ({"position": position} if position is not None else {}))
        panel_row, title_row = [original], [f"{path.name}"]
        for method in explanation.methods:
            if method in explanation.input_maps:
                picture = render_attribution(explanation.input_maps[method][row])
            else:
                saliency = explanation.maps[method][row].cpu()
                picture = overlay(original, saliency, box=box)
                if boxes:  # the Grad-CAM paper's localization box: 15% of the max, largest component
                    picture = draw_box(picture, _to_original(box_from_map(saliency), box, saliency.shape))
            # rows that score a part of the output (a caption's word, a box) are named by that part
            key = cls if position is None else f"{position:02d}"
            target = folder / f"{method}__{key}_{_safe(name)}.png"
            picture.save(target)
            files.append(str(target.relative_to(out)))
            panel_row.append(picture)
            title_row.append(method)
        panels.append(panel_row)
        titles.append(title_row)
        score = f"p = {probability:.2f}" if probability == probability else f"score = {float(explanation.scores[row]):.2f}"
        labels.append(f"{name} ({cls}), {score}" if position is None else f"word/box {position}: {name}, {score}")
    grid(panels, titles, labels).save(folder / "grid.png")
    maps = {
        "classes": torch.tensor([c["index"] for c in classes]),
        "scores": explanation.scores[rows].cpu(),
        "maps": {m: explanation.maps[m][rows].cpu() for m in explanation.methods},
        "layer_maps": {m: explanation.layer_maps[m][rows].cpu() for m in explanation.layer_maps},
        "weights": {m: explanation.weights[m][rows].cpu() for m in explanation.weights},
    }
    if explanation.positions is not None:
        maps["positions"] = explanation.positions[rows].cpu()
    torch.save(maps, folder / "maps.pt")
    record = {
        "file": str(path),
        "size": list(original.size),
        "crop_box": [round(v, 2) for v in box],
        "classes": classes,
        ("detections" if loaded.task == "detection" else "top5"): predicted,
        "outputs": files + [str((folder / "grid.png").relative_to(out)), str((folder / "maps.pt").relative_to(out))],
    }
    return record, panels[0]


def _to_original(map_box: tuple[int, int, int, int], crop_box: Box, size: tuple[int, int]) -> Box:
    """A box in the map's pixels (the model's crop) → the original image's pixels."""
    x0, y0, x1, y1 = crop_box
    sx, sy = (x1 - x0) / size[1], (y1 - y0) / size[0]
    return x0 + map_box[0] * sx, y0 + map_box[1] * sy, x0 + map_box[2] * sx, y0 + map_box[3] * sy


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = subcommand(
        commands, "explain", "explain images: overlays, grids, raw maps and a manifest",
        "Explain images with CAM methods. For each image, writes one overlay per method and class, "
        "a grid, the raw maps (maps.pt) and a manifest.json for the whole run.",
    )
    parser.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    add_model_options(parser, "dotted layer name; 'auto' = the model's recommended layer, else the last spatial layer (default)")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated, from: {', '.join(METHODS)} (default: %(default)s)")
    parser.add_argument("--target", action="append", metavar="TARGET",
                        help="top1 (default), topK, a class index or a class name; repeat for several classes")
    parser.add_argument("--caption", metavar="TEXT", help="captioning models: one map per word of this caption")
    parser.add_argument("--question", metavar="TEXT", help="question-answering models: explain the answer to it")
    parser.add_argument("--box", action="append", metavar="X0,Y0,X1,Y1:LABEL",
                        help="detectors: explain the detection of this box (photo pixels); repeat for several")
    parser.add_argument("--reference", metavar="IMAGE",
                        help="models with an embedding: why each photo matches this one (cosine similarity)")
    parser.add_argument("--out", default="camlens-out", help="output folder (default: %(default)s)")
    add_device_option(parser)
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default: %(default)s)")
    parser.add_argument("--boxes", action="store_true",
                        help="draw on each overlay the box around the map's largest region above 15%% of its max")
    parser.set_defaults(run=run)
