"""``camlens layers``: a model's layers in the order they produce their outputs, with their shapes."""

from __future__ import annotations

import argparse

from .common import EXIT_OK, load_model, subcommand

__all__ = ["add_parser", "run"]


def run(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, args.weights, pretrained=False)  # shapes need no download
    height, width = loaded.preprocessing.size
    found, chosen = loaded.layers()
    print(f"{loaded.name}: layers in the order they produce their outputs, on a {height}×{width} input")
    print(f"  recommended: {loaded.layer}   'auto' finds: {chosen}")
    for layer in found:
        print(f"  {'*' if layer.explainable else ' '} {layer.name:40s} {layer.kind:22s} {layer.described}")
    print("  (* = a possible CAM layer: spatial maps, or a transformer's tokens laid on the patch grid)")
    return EXIT_OK


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = subcommand(commands, "layers", "list a model's layers with their output shapes", examples=False)
    parser.add_argument("model", help="zoo name, torchvision:NAME, timm:NAME or hf:NAME")
    parser.add_argument("--weights", metavar="PATH", help="weights file for models that need one (mobilenet-v2)")
    parser.set_defaults(run=run)
