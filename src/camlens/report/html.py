"""``report.html``: one page per run, opened from ``file://`` with no server and nothing fetched
from the internet. The page is a Jinja2 template (``report/templates/``) of plain HTML, CSS and
JavaScript; the run's records are embedded as JSON and drawn a page of photos at a time, with
images loading lazily, so that a run of thousands of photos stays light to open and scroll."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

__all__ = ["explain_report", "PHOTOS_PER_PAGE"]

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
    path = out / "report.html"
    partial = path.with_suffix(".html.tmp")
    partial.write_text(page, encoding="utf-8")
    partial.replace(path)  # a reader never sees half a page
    return path
