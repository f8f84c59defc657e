"""``report.html``: one page per run, opened from ``file://`` with no server and nothing fetched
from the internet. The page is a Jinja2 template (``report/templates/``) of plain HTML, CSS and
JavaScript; the run's records are embedded as JSON and drawn a page of photos at a time, with
images loading lazily, so that a run of thousands of photos stays light to open and scroll."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from ..data.files import write_atomically

__all__ = ["explain_report", "evaluate_report", "PHOTOS_PER_PAGE"]

PHOTOS_PER_PAGE = 50


def _environment():
    try:
        import jinja2
    except ImportError as error:  # pragma: no cover - jinja2 comes with torch
        raise ImportError("report.html needs Jinja2: pip install jinja2") from error
    return jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                              autoescape=True, trim_blocks=True, lstrip_blocks=True)


def _link(path: str | Path, out: Path) -> str:
    """A link from the report in ``out`` to ``path`` (relative to ``out`` if not absolute, as the
    manifest's outputs are), relative and URL-quoted, so the folder can be moved with its photos."""
    target = Path(path)
    target = target if target.is_absolute() else (Path.cwd() / target)
    return quote(Path(os.path.relpath(target.resolve(), out.resolve())).as_posix())


def _label(cls: Mapping) -> str:
    probability = cls.get("probability")
    score = f"p = {probability:.2g}" if isinstance(probability, float) and probability == probability \
        else f"score = {cls.get('score', float('nan')):.3g}"
    where = f"word/box {cls['position']}: " if "position" in cls else ""
    return f"{where}{cls['name']} ({cls['index']}), {score}"


def _photo(record: Mapping, methods: list[str], out: Path) -> dict:
    outputs = [_link(out / file, out) for file in record["outputs"]]
    overlays, (grid, maps) = outputs[:-2], outputs[-2:]
    per_row = len(methods)
    rows = [{m: overlays[i * per_row + j] for j, m in enumerate(methods) if i * per_row + j < len(overlays)}
            for i in range(len(record["classes"]))]
    top5 = [f"{c['name']} {c['probability']:.2g}" for c in record.get("top5", []) if "probability" in c]
    return {"name": Path(record["file"]).name, "file": _link(record["file"], out), "top5": top5,
            "classes": [{"name": c["name"], "label": _label(c)} for c in record["classes"]], "overlays": rows,
            "links": {"grid": grid, "raw maps (maps.pt)": maps}}


def explain_report(out: Path, manifest: Mapping, titles: Mapping[str, str] | None = None,
                   per_page: int = PHOTOS_PER_PAGE) -> Path:
    """Write ``out/report.html`` for a run of ``camlens explain`` from its ``manifest.json``
    (model, layer, methods and versions at the top; per photo the photo, every method × class
    overlay, class names and scores, links to the grid and the raw maps; filters by class and
    method, kept in the address (``report.html#class=owl&methods=gradcam&page=2``); ``per_page``
    photos a page). ``titles``: how methods are named (``Grad-CAM``)."""
    out = Path(out)
    methods = list(manifest.get("methods", []))
    titles = {m: (titles or {}).get(m, m) for m in methods}
    photos = [_photo(record, methods, out) for record in manifest.get("images", [])]
    versions = manifest.get("versions", {})
    run = [("model", manifest.get("model")), ("layer", manifest.get("layer")), ("fit", manifest.get("fit", "crop")),
           ("methods", ", ".join(titles[m] for m in methods)), ("device", manifest.get("device")),
           ("created", manifest.get("created")), ("command", " ".join(manifest.get("command", []))),
           ("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if k in ("camlens", "torch", "python"))),
           ("failed inputs", len(manifest.get("failures", [])))]
    page = _environment().get_template("explain.html").render(
        count=len(photos), run=[(k, v) for k, v in run if v not in (None, "")],
        methods=[{"name": m, "title": titles[m]} for m in methods],
        class_names=sorted({c["name"] for p in photos for c in p["classes"]}),
        data={"photos": photos, "titles": titles, "methods": methods}, per_page=per_page)
    return write_atomically(out / "report.html", lambda partial: partial.write_text(page, encoding="utf-8"))


def evaluate_report(out: Path, table: Mapping, run: Mapping, examples: Mapping[str, list[dict]] | None = None,
                    diagnosis: list[Path] | None = None, titles: Mapping[str, str] | None = None) -> Path:
    """Write ``out/report.html`` for a run of ``camlens evaluate``: the summary table (sortable,
    the best of each column marked), the mean deletion/insertion curves (``curves.png``), the
    best and worst photos of localization per method (``examples``: method → dicts with
    ``kind``, ``id``, ``iou`` and the picture's ``file``), the diagnosis pairs, and links to the
    records. ``table``: ``methods``, ``metrics`` (name, higher_is_better), ``cells`` (method →
    metric → (mean, ci95, n)) and ``best`` (metric → methods); ``run``: what to show at the top."""
    out = Path(out)
    titles = titles or {}
    metrics = list(table["metrics"])
    rows = []
    for method in table["methods"]:
        cells = []
        for metric in metrics:
            cell = table["cells"].get(method, {}).get(metric["name"])
            cells.append({"value": cell[0] if cell else "", "best": bool(cell) and method in table["best"][metric["name"]],
                          "text": f"{cell[0]:.3f} ± {cell[1]:.3f}" if cell else "–"})
        rows.append({"method": method, "title": titles.get(method, method), "cells": cells})
    images = max((c[2] for m in table["cells"].values() for c in m.values()), default=0)
    shown = [(titles.get(m, m), [dict(e, file=_link(out / e["file"], out)) for e in found])
             for m, found in (examples or {}).items() if found]
    files = [("per-image records (results.jsonl)", "results.jsonl"), ("summary.csv", "summary.csv"),
             ("summary.md", "summary.md"), ("summary.json", "summary.json"), ("protocol.json", "protocol.json")]
    page = _environment().get_template("evaluate.html").render(
        images=images, run=[(k, v) for k, v in run.items() if v not in (None, "")], metrics=metrics, rows=rows,
        curves="curves.png" if (out / "curves.png").exists() else None, examples=shown,
        diagnosis=[{"name": p.stem, "file": _link(p, out)} for p in sorted(diagnosis or [])],
        links=[(name, href) for name, href in files if (out / href).exists()])
    return write_atomically(out / "report.html", lambda partial: partial.write_text(page, encoding="utf-8"))
