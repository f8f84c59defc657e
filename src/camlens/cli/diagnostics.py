"""What the diagnostic commands (``robustness``, ``bias``, ``discrimination``, ``trust``) share:
a labelled dataset from the command line, the model on its device, and a table written as CSV,
JSON and Markdown."""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from ..data import Sample, load_dataset
from ..models import LoadedModel
from .common import UsageError, add_device_option, add_model_options, load_model, parse_device

__all__ = ["add_dataset_options", "dataset_samples", "device_model", "first", "write_table"]

Item = TypeVar("Item")


def add_dataset_options(parser: argparse.ArgumentParser, out: str, layer_help: str) -> None:
    """The dataset, model, device, ``--limit``, ``--out`` and ``--restart`` options."""
    parser.add_argument("dataset", help="labels/boxes CSV, or a folder of VOC/ImageNet XML annotations")
    parser.add_argument("--images", help="folder the dataset's image paths are relative to (default: the CSV's folder)")
    add_model_options(parser, layer_help)
    add_device_option(parser)
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--out", default=out, help="output folder (default: %(default)s)")
    parser.add_argument("--restart", action="store_true", help="discard earlier results in OUT instead of resuming")


def dataset_samples(args: argparse.Namespace) -> list[Sample]:
    """The dataset's samples (the first ``--limit``), or a usage error saying why there are none."""
    try:
        samples = load_dataset(args.dataset, args.images)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot load the dataset: {error}") from None
    return first(samples, args.limit, args.dataset)


def first(items: list[Item], limit: int | None, source: str) -> list[Item]:
    """The first ``limit`` of ``items`` read from ``source`` (all for ``None`` or 0), or a usage
    error where there are none."""
    items = items[:limit] if limit else items
    if not items:
        raise UsageError(f"{source} lists no images")
    return items


def device_model(args: argparse.Namespace, name: str | None = None, weights: str | None = None) -> LoadedModel:
    """The model of ``--model`` (or ``name``), on ``--device``."""
    device = parse_device(args.device)
    loaded = load_model(name or args.model, weights if name else args.weights, args.fit)
    loaded.model.to(device)
    return loaded


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def write_table(out: Path, name: str, rows: Sequence[Mapping], columns: Sequence[str], about: Mapping) -> str:
    """``rows`` written to ``out/NAME.csv`` (every key), ``NAME.json`` (with ``about``: the model,
    the layer, the settings) and ``NAME.md`` (``columns`` only); returns the Markdown table."""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    with open(out / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, keys)
        writer.writeheader()
        writer.writerows(rows)
    (out / f"{name}.json").write_text(json.dumps(dict(about) | {"rows": list(rows)}, indent=1))
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(column, "")) for column in columns) + " |" for row in rows]
    table = "\n".join(lines)
    (out / f"{name}.md").write_text(table + "\n")
    return table
