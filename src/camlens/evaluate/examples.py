"""Pictures for the report of a run: the best and the worst photos of localization per method,
the photo with the map of its true class, the true boxes (green) and the map's box (red)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..data import Sample, box_in_photo, read_image
from ..explain import explain
from ..models import LoadedModel
from ..report import draw_box, overlay
from .protocol import Protocol

__all__ = ["localization_examples"]


def localization_examples(model: LoadedModel, samples: Sequence[Sample], records: Sequence[dict], methods: Sequence[str],
                          layer: str, protocol: Protocol, out: Path, count: int = 2,
                          options: dict | None = None) -> dict[str, list[dict]]:
    """For each method, the ``count`` photos whose map's box has the highest IoU with a true box
    and the ``count`` with the lowest (ties by id), drawn to ``out/examples/``: method → entries
    with ``kind`` (best, worst), ``id``, ``iou`` and ``file`` (relative to ``out``). The maps are
    computed again for those photos alone, with the run's method ``options``, as the run keeps
    numbers, not maps. A photo measured twice (a resumed run that added groups) counts once."""
    by_id = {sample.id: sample for sample in samples}
    found: dict[str, list[dict]] = {}
    for method in methods:
        latest = {r["id"]: r["box_iou"] for r in records
                  if r.get("method") == method and "box_iou" in r and r["id"] in by_id}
        scored = sorted(((iou, image) for image, iou in latest.items()), key=lambda x: (-x[0], x[1]))
        if not scored:
            continue
        chosen = [("best", s) for s in scored[:count]] + [("worst", s) for s in scored[::-1][:count] if s not in scored[:count]]
        own = {method: options[method]} if options and method in options else None
        found[method] = [_draw(model, by_id[image], method, layer, protocol, out, kind, iou, own)
                         for kind, (iou, image) in chosen]
    return found


def _draw(model: LoadedModel, sample: Sample, method: str, layer: str, protocol: Protocol, out: Path, kind: str,
          iou: float, options: dict | None, side: int = 480) -> dict:
    photo = read_image(sample.path)
    device = next(model.model.parameters()).device
    image = model.preprocessing(photo)[None].to(device)
    explanation = explain(model.model, model.inputs(image), layer=layer, methods=(method,), target=sample.label,
                          options=options)
    saliency = explanation.maps[method][0].clamp_min(0).cpu()
    covered = model.preprocessing.crop_box(photo.size)
    picture = overlay(photo, saliency, box=covered, max_side=side)
    scale = picture.width / photo.width  # boxes drawn at the picture's size, so lines keep their width
    for box in sample.boxes_of(sample.label):
        picture = draw_box(picture, tuple(v * scale for v in box), "lime")
    mapped = box_in_photo(protocol.box(saliency), covered, saliency.shape)
    picture = draw_box(picture, tuple(v * scale for v in mapped), "red")
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in sample.id)  # the whole id: unique
    relative = Path("examples") / f"{method}-{kind}-{name}.jpg"
    (out / relative).parent.mkdir(parents=True, exist_ok=True)
    picture.save(out / relative, quality=90)
    return {"kind": kind, "id": sample.id, "iou": iou, "file": str(relative)}
