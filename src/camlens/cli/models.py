"""``camlens models``: the model zoo, and whether each entry is installed."""

from __future__ import annotations

import argparse

from ..models import ZOO
from .common import EXIT_OK, subcommand

__all__ = ["add_parser", "run"]


def run(args: argparse.Namespace) -> int:
    layer = max(len(entry.layer) for entry in ZOO.values())
    print(f"{'name':22s} {'installed':10s} {'task':15s} {'licence':11s} {'layer':{layer}s} description")
    for entry in ZOO.values():
        print(f"{entry.name:22s} {'yes' if entry.installed else 'no':10s} {entry.task:15s} {entry.licence:11s} "
              f"{entry.layer:{layer}s} {entry.description}" + ("" if entry.installed else f" ({entry.install_line()})"))
    print("also: torchvision:NAME and timm:NAME when torchvision / timm are installed (e.g. torchvision:resnet50), "
          "hf:NAME (transformers) and onnx:PATH (an ONNX file; pip install onnx onnx2torch onnxsim onnxruntime)")
    return EXIT_OK


def add_parser(commands: argparse._SubParsersAction) -> None:
    subcommand(commands, "models", "list the model zoo", examples=False).set_defaults(run=run)
