"""``report.html`` of an evaluation: the summary, its curves, localization examples and the
diagnosis pictures, laid out by :func:`camlens.report.evaluate_report`."""

from __future__ import annotations

from pathlib import Path

from ..methods import METHODS
from ..metrics.registry import METRICS
from ..models import LoadedModel
from ..report import evaluate_report
from .summary import Summary

__all__ = ["write_report"]


def write_report(out: Path, summary: Summary, model: LoadedModel, layer: str, examples: dict[str, list[dict]]) -> Path:
    """Write ``out/report.html`` for ``summary`` (see :func:`camlens.report.evaluate_report`)."""
    out = Path(out)
    cells: dict[str, dict[str, tuple[float, float, int]]] = {}
    for (method, metric), cell in summary.cells.items():
        cells.setdefault(method, {})[metric] = cell
    table = {"methods": list(summary.methods), "cells": cells,
             "metrics": [{"name": k, "higher_is_better": METRICS[k].higher_is_better} for k in summary.metrics],
             "best": {k: list(summary.best(k)) for k in summary.metrics}}
    run = {"model": model.name, "layer": layer, "fit": model.preprocessing.fit,
           "failed images": len(summary.failures) or None}
    titles = {m: METHODS[m].title for m in summary.methods if m in METHODS}
    return evaluate_report(out, table, run, examples, sorted((out / "diagnosis").glob("*.png")), titles)
