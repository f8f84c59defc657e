"""The summary of a run: mean ± 95% confidence interval per (method, metric), the best per column
marked, and the mean deletion and insertion curves; computed from the results file alone."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..metrics import faithfulness
from ..metrics.registry import METRICS
from ..report.figures import plot_curves

__all__ = ["Summary", "summarize", "merged", "CURVES"]

CURVES = ("deletion_curve", "insertion_curve")


@dataclass(frozen=True)
class Summary:
    """Mean and 95% confidence half-width per (method, metric), with the count of images."""

    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    cells: dict[tuple[str, str], tuple[float, float, int]]
    curves: dict[str, dict[str, list[float]]]
    failures: dict[str, str] = field(default_factory=dict)  # image id → why it could not be evaluated

    def best(self, metric: str, digits: int = 3) -> tuple[str, ...]:
        """The methods with the best mean of ``metric``, all of those tied with it when rounded
        to ``digits`` (the precision the table prints): methods that coincide on a head, such as
        CAM, Grad-CAM and XGrad-CAM on GAP → linear, are marked together."""
        means = {m: round(self.cells[(m, metric)][0], digits) for m in self.methods if (m, metric) in self.cells}
        if not means:
            return ()
        top = (max if METRICS[metric].higher_is_better else min)(means.values())
        return tuple(m for m, v in means.items() if v == top)

    def rows(self) -> list[dict]:
        return [{"method": m, "metric": k, "mean": c[0], "ci95": c[1], "n": c[2],
                 "higher_is_better": METRICS[k].higher_is_better} for (m, k), c in self.cells.items()]

    def markdown(self) -> str:
        arrow = lambda k: "↑" if METRICS[k].higher_is_better else "↓"  # noqa: E731
        header = "| method | " + " | ".join(f"{k} {arrow(k)}" for k in self.metrics) + " |"
        lines = [header, "|" + "---|" * (len(self.metrics) + 1)]
        best = {k: self.best(k) for k in self.metrics}
        for m in self.methods:
            cells = []
            for k in self.metrics:
                if (m, k) not in self.cells:
                    cells.append("–")
                    continue
                mean, half, _ = self.cells[(m, k)]
                text = f"{mean:.3f} ± {half:.3f}"
                cells.append(f"**{text}**" if m in best[k] else text)
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        count = max((c[2] for c in self.cells.values()), default=0)
        lines.append(f"\n{count} images; mean ± 95% confidence interval (Student t); best per column in bold "
                     "(all of those tied at this precision); ↑ higher is better, ↓ lower is better.")
        if self.failures:
            lines.append(f"{len(self.failures)} image(s) could not be evaluated: " + "; ".join(self.failures.values()))
        return "\n".join(lines)

    def write(self, out: Path) -> None:
        (out / "summary.md").write_text(self.markdown() + "\n", encoding="utf-8")
        with open(out / "summary.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["method", "metric", "mean", "ci95", "n", "higher_is_better"])
            writer.writeheader()
            writer.writerows(self.rows())
        (out / "summary.json").write_text(json.dumps({"rows": self.rows(), "curves": self.curves}, indent=1), encoding="utf-8")
        if self.curves:
            self.plot_curves(out / "curves.png")

    def plot_curves(self, path: Path) -> None:
        """The mean deletion and insertion curves, each method's AUC in the legend."""
        curves = {m: {kind.removesuffix("_curve"): values for kind, values in c.items()} for m, c in self.curves.items()}
        areas = {m: {kind: float(faithfulness.auc(torch.tensor(values))) for kind, values in c.items()}
                 for m, c in curves.items()}
        plot_curves(curves, areas).save(path)


def _mean_ci(values: list[float]) -> tuple[float, float]:
    from scipy.stats import t

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(t.ppf(0.975, n - 1) * sd / math.sqrt(n))


def merged(records: Iterable[dict]) -> list[dict]:
    """One record per (image id, method): the later records of a pair (what a resumed run added,
    or a retry of an image that failed) update the earlier; a success clears an earlier error."""
    by_key: dict[tuple[str, str], dict] = {}
    for record in records:
        key = (record["id"], record["method"])
        combined = {**by_key.get(key, {}), **record}
        if "error" not in record:
            combined.pop("error", None)
        combined["groups"] = sorted(set(by_key.get(key, {}).get("groups", [])) | set(record.get("groups", [])))
        by_key[key] = combined
    return list(by_key.values())


def summarize(records: Iterable[dict], methods: Sequence[str] | None = None,
              ids: Sequence[str] | None = None) -> Summary:
    """The summary of result records (as written to ``results.jsonl``, merged by
    :func:`merged`), of ``methods`` and of the images ``ids`` (default: all there are)."""
    records = merged(records)
    if ids is not None:
        wanted = set(ids)
        records = [r for r in records if r["id"] in wanted]
    methods = tuple(methods) if methods else tuple(dict.fromkeys(r["method"] for r in records))
    metrics = tuple(k for k in METRICS if any(k in r for r in records))
    cells, curves = {}, {}
    for m in methods:
        mine = [r for r in records if r["method"] == m]
        for k in metrics:
            values = [r[k] for r in mine if r.get(k) is not None and not math.isnan(r[k])]
            if values:
                mean, half = _mean_ci(values)
                cells[(m, k)] = (mean, half, len(values))
        with_curves = [r for r in mine if "deletion_curve" in r]
        if with_curves:
            curves[m] = {kind: [sum(c) / len(with_curves) for c in zip(*(r[kind] for r in with_curves))] for kind in CURVES}
    failures = {r["id"]: r["error"] for r in records if "error" in r}
    return Summary(methods, metrics, cells, curves, failures)
