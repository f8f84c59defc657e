"""Regions of a photo where evidence should *not* be — a border, a watermark, the background —
named by the user for the bias audit (:mod:`camlens.evaluate.bias`), and carried into the model
input's pixels through the preprocessing's fit.

A region is written ``NAME=SPEC`` (or ``SPEC`` alone, which then names it), ``SPEC`` being one of:

- ``border:W``: a frame ``W`` pixels wide along the photo's edges;
- ``x0,y0,x1,y1``: a rectangle, in the photo's pixels;
- ``background``: everything outside the object (its boxes or mask);
- a path to an image file the photos' size (a mask shared by every photo, a watermark's, say):
  where it is bright (a channel past 127), or, for an image with transparency, where it is
  opaque (alpha past 127); read once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data import Preprocessing, boxes_in_input
from ..metrics.localization import boxes_mask

__all__ = ["Region", "parse_region"]


@dataclass(frozen=True)
class Region:
    """One user-given region: ``kind`` is ``"border"`` (``width`` in pixels), ``"rectangle"``
    (``box``), ``"background"`` or ``"mask"`` (``path``, read into ``image``: white where the
    region is, and ``digest``, a SHA-256 of that, which names the region in a run's settings)."""

    name: str
    kind: str
    width: float = 0.0
    box: tuple[float, float, float, float] | None = None
    path: Path | None = None
    image: Image.Image | None = field(default=None, compare=False, repr=False)
    digest: str | None = None

    def settings(self) -> dict:
        """What defines the region in a run's recorded settings: a mask by its pixels, not its path."""
        return {"name": self.name, "kind": self.kind, "width": self.width, "box": self.box, "mask": self.digest}

    def in_input(self, photo_size: tuple[int, int], preprocessing: Preprocessing, object_mask: torch.Tensor) -> torch.Tensor:
        """The region as a boolean mask of the model input (height, width), for a photo of
        ``photo_size`` (width, height) whose object covers ``object_mask`` in the input."""
        if self.kind == "background":
            return ~object_mask
        if self.kind == "mask":
            fitted = preprocessing.fit_image(self.image, Image.NEAREST, fill=0)
            return torch.from_numpy(np.array(fitted) > 127).to(object_mask.device)
        width, height = photo_size
        if self.kind == "border":
            w = self.width
            boxes = [(0, 0, width, w), (0, height - w, width, height), (0, 0, w, height), (width - w, 0, width, height)]
        else:
            boxes = [self.box]
        return boxes_mask(boxes_in_input(boxes, photo_size, preprocessing), preprocessing.size).to(object_mask.device)


def parse_region(text: str) -> Region:
    """A :class:`Region` from ``NAME=SPEC`` or ``SPEC`` (see the module docstring); a ``ValueError``
    says what was expected."""
    name, _, spec = text.partition("=") if "=" in text else (text, "", text)
    name, spec = name.strip(), spec.strip()
    if not name or not spec:
        raise ValueError(f"region {text!r}: write NAME=SPEC, e.g. frame=border:3 or logo=0,0,40,20")
    if spec == "background":
        return Region(name, "background")
    if spec.startswith("border:"):
        try:
            width = float(spec.removeprefix("border:"))
        except ValueError:
            width = -1.0
        if width <= 0:
            raise ValueError(f"region {text!r}: border:W takes a positive width in pixels")
        return Region(name, "border", width=width)
    parts = spec.split(",")
    if len(parts) == 4:
        try:
            x0, y0, x1, y1 = (float(p) for p in parts)
        except ValueError:
            raise ValueError(f"region {text!r}: a rectangle is four numbers x0,y0,x1,y1") from None
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"region {text!r}: the rectangle is empty (x1 ≤ x0 or y1 ≤ y0)")
        return Region(name, "rectangle", box=(x0, y0, x1, y1))
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"region {text!r}: not border:W, x0,y0,x1,y1, background or a mask image that exists")
    try:
        with Image.open(path) as picture:
            rgba = np.array(picture.convert("RGBA"))
    except OSError as error:
        raise ValueError(f"region {text!r}: cannot read the mask image ({error})") from None
    alpha = rgba[..., 3]
    # a logo on a transparent canvas: where it is opaque; else where any colour is bright (past
    # half: a JPEG's noise in the black is not region)
    inside = alpha > 127 if (alpha < 255).any() else rgba[..., :3].max(axis=-1) > 127
    if not inside.any():
        raise ValueError(f"region {text!r}: the mask image is black everywhere, it marks no region")
    pixels = inside.astype(np.uint8) * 255
    digest = hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()
    return Region(name, "mask", path=path, image=Image.fromarray(pixels), digest=digest)
