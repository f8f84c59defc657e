"""``camlens layers``: a model's layers in the order they produce their outputs, with their shapes."""

from __future__ import annotations

import argparse

import torch

from ..engine.layers import LayerError, auto_layer, layer_output_shapes
from ..engine.tokens import find_layout
from .common import EXIT_OK, load_model, subcommand

__all__ = ["add_parser", "run"]


def _kind_of(loaded, name: str, shape: tuple[int, ...] | None, size: tuple[int, int]) -> tuple[bool, str]:
    """Whether a layer's output can be explained, and how it lies on the image: (B, C, h, w)
    maps, or a transformer's tokens with their layout."""
    if not shape:
        return False, "-"
    if len(shape) in (3, 4):
        try:
            layout = find_layout(loaded.model, name, torch.empty(shape, device="meta"), size)
        except LayerError:
            layout = None
        if layout is not None:
            where = f"channels-last {shape[1]}×{shape[2]} maps" if layout.channels_last else layout.describe()
            return True, f"{tuple(shape)}  {where}"
    return len(shape) == 4 and shape[-1] * shape[-2] > 1, str(tuple(shape))


def run(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, args.weights, pretrained=False)  # shapes need no download
    crop = loaded.preprocessing.crop
    inputs = loaded.inputs(torch.zeros(1, 3, crop, crop))
    shapes = layer_output_shapes(loaded.model, inputs)
    chosen = auto_layer(loaded.model, inputs)
    print(f"{loaded.name}: layers in the order they produce their outputs, on a {crop}×{crop} input")
    print(f"  recommended: {loaded.layer}   'auto' finds: {chosen}")
    for name, shape in shapes.items():
        spatial, described = _kind_of(loaded, name, shape, (crop, crop))
        kind = type(loaded.model.get_submodule(name)).__name__
        print(f"  {'*' if spatial else ' '} {name:40s} {kind:22s} {described}")
    print("  (* = a possible CAM layer: spatial maps, or a transformer's tokens laid on the patch grid)")
    return EXIT_OK


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = subcommand(commands, "layers", "list a model's layers with their output shapes", examples=False)
    parser.add_argument("model", help="zoo name, torchvision:NAME, timm:NAME or hf:NAME")
    parser.add_argument("--weights", metavar="PATH", help="weights file for models that need one (mobilenet-v2)")
    parser.set_defaults(run=run)
