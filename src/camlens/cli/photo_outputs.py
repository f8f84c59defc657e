"""What ``camlens explain`` writes for one photo: an overlay per method and class, a grid of
them, the raw maps (``maps.pt``), and the photo's manifest record."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from ..data import Photo, box_in_photo, fit_within
from ..explanation import Explanation
from ..methods import METHODS
from ..metrics.localization import box_from_map
from ..models import LoadedModel
from ..models.loaded import row_probability
from ..report import SAVE_OPTIONS, draw_box, grid, overlay, render_attribution

__all__ = ["write_photo", "overview_row", "overview_row_from_files"]



def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")


def write_photo(out: Path, stem: str, photo: Photo, explanation: Explanation, rows: list[int], predicted: list[dict],
                probabilities: torch.Tensor | None, loaded: LoadedModel, boxes: bool,
                picture_format: str = "jpg") -> tuple[dict, list[Image.Image]]:
    """Writes one photo's overlays (at the display copy's resolution) and grid as ``picture_format``
    files (``jpg`` or ``png``) and its raw maps; returns its manifest record and the pictures of
    its first class (the photo, then one per method)."""
    save = SAVE_OPTIONS[picture_format]
    folder = out / stem
    folder.mkdir(parents=True, exist_ok=True)
    box = photo.display_box
    files, panels, titles, labels, classes = [], [], [], [], []
    for row in rows:
        cls = int(explanation.targets[row])
        name = loaded.class_names[cls] if cls >= 0 else "target"
        probability = row_probability(probabilities, cls)
        position = None if explanation.positions is None else int(explanation.positions[row])
        classes.append({"index": cls, "name": name, "score": float(explanation.scores[row]), "probability": probability}
                       | ({"position": position} if position is not None else {}))
        panel_row, title_row = [photo.image], [photo.path.name]
        for method in explanation.methods:
            if method in explanation.input_maps:
                picture = render_attribution(explanation.input_maps[method][row], size=photo.image.size, box=box)
            else:
                saliency = explanation.maps[method][row].cpu()
                picture = overlay(photo.image, saliency, box=box, max_side=None)
                if boxes:  # the Grad-CAM paper's localization box: 15% of the max, largest component
                    picture = draw_box(picture, box_in_photo(box_from_map(saliency), box, saliency.shape))
            # rows that score a part of the output (a caption's word, a box) are named by that part
            key = cls if position is None else f"{position:02d}"
            target = folder / f"{method}__{key}_{_safe(name)}.{picture_format}"
            picture.save(target, **save)
            files.append(str(target.relative_to(out)))
            panel_row.append(picture)
            title_row.append(METHODS[method].title)
        panels.append(panel_row)
        titles.append(title_row)
        score = (f"p = {probability:.2g}" if probability == probability  # two significant digits: 0.22, 0.0039
                 else f"score = {float(explanation.scores[row]):.2f}")
        labels.append(f"{name} ({cls}), {score}" if position is None else f"word/box {position}: {name}, {score}")
    sheet = folder / f"grid.{picture_format}"
    grid(panels, titles, labels).save(sheet, **save)
    torch.save(explanation.saved(rows), folder / "maps.pt")
    record = {
        "file": str(photo.path),
        "size": list(photo.size),
        "crop_box": [round(v, 2) for v in photo.crop_box],
        "classes": classes,
        ("detections" if loaded.task == "detection" else "top5"): predicted,
        "outputs": files + [str(sheet.relative_to(out)), str((folder / "maps.pt").relative_to(out))],
    }
    return record, panels[0]


def overview_row(record: dict, methods: tuple[str, ...]) -> tuple[list[str], str]:
    """A photo's titles and label in the overview: the file and its first class per method."""
    first = record["classes"][0]["name"] if record["classes"] else "-"
    return [Path(record["file"]).name, *(METHODS[m].title for m in methods)], f"{Path(record['file']).name}: {first}"


def overview_row_from_files(out: Path, record: dict, methods: tuple[str, ...],
                            thumbnail: int) -> list[Image.Image | None]:
    """A photo's overview pictures read back from what an earlier run wrote (to finish the page
    a killed run left unwritten): the photo, then its first class's picture per method; a file
    that is gone since leaves its panel blank."""
    pictures: list[Image.Image | None] = []
    for path in [record["file"], *(out / file for file in record["outputs"][:len(methods)])]:
        try:
            with Image.open(path) as picture:
                picture.draft("RGB", (thumbnail, thumbnail))
                pictures.append(fit_within(picture.convert("RGB"), 4 * thumbnail)[0])
        except (OSError, ValueError):
            pictures.append(None)
    return pictures
