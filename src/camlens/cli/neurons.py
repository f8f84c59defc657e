"""``camlens neurons``: textual explanations from neuron importance — the channels a method weighs
most for a class, each named by the concept it detects on a probe set with concept masks (Network
Dissection), as a sentence and a table."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data import load_dataset, read_image, resolve_class
from ..data.scenes import scene_concepts, scenes
from ..engine.layers import LayerError
from ..evaluate.concepts import dissect, mask_concepts, neuron_text
from ..explain import explain
from ..methods import METHODS
from ..models import LoadedModel
from .common import (
    EXIT_OK,
    UsageError,
    add_device_option,
    add_model_options,
    images_named,
    method_names,
    subcommand,
    usage_error,
)
from .diagnostics import device_model, write_table

__all__ = ["add_parser", "run"]


def _probe(args: argparse.Namespace, loaded: LoadedModel, device: torch.device) -> tuple[torch.Tensor, dict]:
    """The probe images (preprocessed) and their concept masks in the input's pixels."""
    preprocessing = loaded.preprocessing
    if args.probe == "scenes":
        batch = scenes(args.probe_count, seed=7)
        images = torch.stack([preprocessing(scene.pil()) for scene in batch])
        fitted = lambda mask: torch.from_numpy(np.array(  # noqa: E731
            preprocessing.fit_image(Image.fromarray(mask.numpy().astype(np.uint8) * 255), Image.NEAREST)) > 127)
        concepts = {name: torch.stack([fitted(m) for m in masks]) for name, masks in scene_concepts(batch).items()}
        return images.to(device), concepts
    try:
        samples = load_dataset(args.probe)[: args.probe_count]
        lines = Path(args.concept_names).read_text().splitlines() if args.concept_names else None
    except (OSError, ValueError) as error:
        raise UsageError(f"--probe: {error}") from None
    values = sorted({int(v) for s in samples if s.mask for v in np.unique(np.array(Image.open(s.mask)))} - {0, 255})
    names = {v: lines[v] if lines and v < len(lines) else f"class {v}" for v in values}
    try:
        concepts = mask_concepts(samples, preprocessing, names)
    except ValueError as error:
        raise UsageError(f"--probe: {error}") from None
    return loaded.batch([read_image(s.path) for s in samples]), concepts


def run(args: argparse.Namespace) -> int:
    method, *more = method_names(args.method)
    if more:
        raise UsageError("--method takes one method")
    weighted = [name for name, m in METHODS.items() if m.kind in ("weights", "perturbation")]
    if method not in weighted:
        raise UsageError(f"--method: {method} has no channel weights to rank channels by; use one that has "
                         f"({', '.join(weighted)})")
    named = images_named(args.images)
    loaded = device_model(args)
    device = loaded.device
    layer = loaded.layer if args.layer == "auto" else args.layer
    try:
        target = None if args.target is None else resolve_class(args.target, loaded.class_names)
    except ValueError as error:
        raise UsageError(f"--target: {error}") from None
    try:
        photos = loaded.batch([read_image(path) for path, _ in named])
        explanation = explain(loaded.model, photos, layer, method, target)
    except LayerError as error:
        raise usage_error(error, args.model) from None
    images, concepts = _probe(args, loaded, device)
    try:
        dissection = dissect(loaded.model, layer, images, concepts, quantile=args.quantile, progress=True)
    except ValueError as error:
        raise UsageError(str(error)) from None
    rows = []
    for row, (_, name) in enumerate(named):
        text = neuron_text(explanation, row, dissection, loaded.class_names, method, args.k)
        print(f"{name}: {text.sentence}")
        rows += [{"image": name, "class": loaded.class_names[int(explanation.targets[row])], "rank": rank + 1,
                  "channel": channel, "weight": weight, "concept": concept, "iou": iou}
                 for rank, (channel, weight, concept, iou) in enumerate(text.channels)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_table(out, "neurons", rows, ("image", "class", "rank", "channel", "weight", "concept", "iou"),
                {"model": loaded.name, "layer": dissection.layer, "method": method, "probe": args.probe,
                 "concepts": list(dissection.concepts)})
    print(f"table: {out}/neurons.md/.csv/.json")
    return EXIT_OK


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = subcommand(
        commands, "neurons", "textual explanations: the most important channels, named by the concepts they detect",
        "The Grad-CAM paper's textual explanations: for each image, the --k channels of the layer with the largest "
        "weights under --method, each named by the concept it detects (Network Dissection: IoU of its activation, "
        "thresholded at a high quantile over a probe set, with concept masks). The probe set is synthetic scenes "
        "(shapes, colours, background; default) or a dataset with segmentation masks (--probe CSV).",
    )
    parser.add_argument("images", nargs="+", help="image files, folders or globs")
    add_model_options(parser, "dotted layer name (default: the model's recommended layer)")
    add_device_option(parser)
    parser.add_argument("--target", help="the class explained (name or index; default: each image's top class)")
    parser.add_argument("--method", default="gradcam", help="a method with channel weights (default: %(default)s)")
    parser.add_argument("--k", type=int, default=5, help="channels named per image (default: %(default)s)")
    parser.add_argument("--probe", default="scenes",
                        help="scenes, or a dataset CSV with a mask column whose values are concepts (default: %(default)s)")
    parser.add_argument("--probe-count", type=int, default=300, help="probe images used (default: %(default)s)")
    parser.add_argument("--concept-names", metavar="FILE", help="the concepts' names, one per line by mask value")
    parser.add_argument("--quantile", type=float, default=0.995,
                        help="activation quantile a channel must pass (default: %(default)s, Network Dissection's)")
    parser.add_argument("--out", default="camlens-neurons", help="output folder (default: %(default)s)")
    parser.set_defaults(run=run)
