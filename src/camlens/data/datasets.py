"""Evaluation datasets: images with labels, boxes and segmentation masks, from CSV files, PASCAL
VOC / ImageNet XML and PNG masks.

A CSV needs an image column (``file``, ``filename``, ``image`` or ``path``, relative to the CSV's
folder unless absolute) and a label column (``class_index``, ``index``, ``label`` or ``class``).
If it also has box columns (``x0_file, y0_file, x1_file, y1_file`` or ``x0, y0, x1, y1`` or
``xmin, ymin, xmax, ymax``, in the file's pixels), every row is one box and rows of the same
image are merged. An optional ``mask`` column names a PNG. So
``imagenet_val_bbox/annotations.csv`` (boxes) and ``imagenet_sample_1000/labels.csv`` (labels)
both load with :func:`load_dataset`. Carrying boxes and masks through the model's resizing and
cropping is :mod:`camlens.data.geometry`'s.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ElementTree
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .geometry import Box
from .labels import imagenet_wnids

__all__ = ["Sample", "load_dataset", "read_voc_xml", "load_voc", "IMAGE_COLUMNS", "find_column"]

IMAGE_COLUMNS = ("file", "filename", "image", "path")
_LABEL_COLUMNS = ("class_index", "index", "label", "class")
_BOX_COLUMNS = (("x0_file", "y0_file", "x1_file", "y1_file"), ("x0", "y0", "x1", "y1"), ("xmin", "ymin", "xmax", "ymax"))


@dataclass(frozen=True)
class Sample:
    """One image to evaluate on: its label, its boxes ``(class, (x0, y0, x1, y1))`` in the file's
    pixels, and optionally a segmentation mask (PNG of class indices)."""

    path: Path
    label: int | None = None
    boxes: tuple[tuple[int, Box], ...] = ()
    mask: Path | None = None
    id: str = field(default="")

    def boxes_of(self, class_index: int) -> list[Box]:
        return [box for cls, box in self.boxes if cls == class_index]


def find_column(header: Sequence[str], names: Sequence[str], what: str, path: Path, required: bool = True) -> str | None:
    """The first of ``names`` in a CSV's ``header``; none found is a ``ValueError`` naming the
    file, what was looked for and what the header has (or ``None`` when not ``required``)."""
    for name in names:
        if name in header:
            return name
    if required:
        raise ValueError(f"{path}: no {what} column; expected one of {', '.join(names)} (found {', '.join(header)})")
    return None


def load_dataset(path: str | Path, images: str | Path | None = None) -> list[Sample]:
    """Samples from a labels/boxes CSV (see the module docstring) or a folder of VOC/ImageNet XML
    files (see :func:`load_voc`). ``images``: the folder image paths are relative to (default:
    the CSV's folder)."""
    path = Path(path)
    if path.is_dir():
        return load_voc(path, images or path)
    root = Path(images) if images is not None else path.parent
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        image_column = find_column(header, IMAGE_COLUMNS, "image", path)
        label_column = find_column(header, _LABEL_COLUMNS, "label", path)
        box_columns = next((names for names in _BOX_COLUMNS if all(n in header for n in names)), None)
        mask_column = "mask" if "mask" in header else None
        merged: dict[str, dict] = {}
        for number, row in enumerate(reader, start=2):
            name = row[image_column]
            try:
                label = int(row[label_column])
                box = tuple(float(row[c]) for c in box_columns) if box_columns else None
            except ValueError as error:
                raise ValueError(f"{path}, line {number}: {error}") from None
            entry = merged.setdefault(name, {"label": label, "boxes": [], "mask": row.get(mask_column) if mask_column else None})
            if box is not None:
                entry["boxes"].append((label, box))
    return [
        Sample(root / name, entry["label"], tuple(entry["boxes"]), root / entry["mask"] if entry["mask"] else None, id=name)
        for name, entry in merged.items()
    ]


def read_voc_xml(path: str | Path, class_index: Mapping[str, int]) -> tuple[str, list[tuple[int, Box]]]:
    """The file name and the boxes ``(class, (xmin, ymin, xmax, ymax))`` of one PASCAL VOC /
    ImageNet annotation file; object names (VOC class names or ImageNet WordNet IDs) are mapped
    to indices by ``class_index``. Coordinates are taken as written."""
    root = ElementTree.parse(path).getroot()
    filename = root.findtext("filename") or Path(path).stem
    boxes = []
    for item in root.iter("object"):
        name = (item.findtext("name") or "").strip()
        if name not in class_index:
            raise ValueError(f"{path}: unknown object name {name!r}")
        bounds = item.find("bndbox")
        boxes.append((class_index[name], tuple(float(bounds.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))))
    return filename, boxes


def load_voc(annotations: str | Path, images: str | Path, class_index: Mapping[str, int] | None = None,
             extensions: Collection[str] = (".jpg", ".jpeg", ".png", ".JPEG")) -> list[Sample]:
    """Samples from a folder of XML files; the label of an image is its first object's class.
    ``class_index`` defaults to ImageNet's WordNet IDs (the shared data's ``imagenet_classes.csv``
    order, which is camlens' class order)."""
    if class_index is None:
        class_index = {wnid: index for index, wnid in enumerate(imagenet_wnids())}
    samples = []
    for xml in sorted(Path(annotations).glob("*.xml")):
        filename, boxes = read_voc_xml(xml, class_index)
        candidates = [Path(images) / filename] + [Path(images) / (Path(filename).stem + e) for e in extensions]
        image = next((c for c in candidates if c.is_file()), candidates[0])
        samples.append(Sample(image, boxes[0][0] if boxes else None, tuple(boxes), id=image.name))
    return samples
