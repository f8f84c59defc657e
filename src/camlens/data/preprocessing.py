"""From a photo to the model's input: fit it into the model's square (center-crop, resize or
pad), scale and normalize, and where the model's square lies in the original photo (for
overlays and for carrying annotations through)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image

__all__ = ["Preprocessing", "FITS", "Fit"]

Fit = Literal["crop", "resize", "pad"]
FITS: tuple[str, ...] = ("crop", "resize", "pad")


@dataclass(frozen=True)
class Preprocessing:
    """A photo → the model's ``crop``×``crop`` input, scaled to [0, 1], then ``(x − mean) / std``
    per channel, as a tensor of ``dtype`` (the name of a torch float type: ``"float64"`` for
    reference computations with a model cast to float64).

    ``fit`` says how a photo of any shape becomes a square:

    - ``"crop"`` (the default): resize the short side to ``resize``, then center-crop. This is
      how ImageNet classifiers are validated (resize 256, crop 224), so scores and accuracy are
      the published ones — but whatever lies outside the central square is not seen, and a map
      cannot show it.
    - ``"resize"``: stretch the whole photo to the square. Everything is seen; shapes are
      distorted by the photo's aspect ratio, which classifiers trained on random-resized crops
      (aspect ratios 3/4 to 4/3) tolerate.
    - ``"pad"``: scale the long side to ``crop`` and pad the rest with zeros after normalization
      (the mean colour). Everything is seen, undistorted, but smaller, beside blank borders the
      model never met in training.

    For resize and pad the model's square covers the whole photo, so maps do too.

    ``width``, when given, makes the input a ``crop`` × ``width`` rectangle (height × width) rather
    than a square: a text reader's word crop (48 × 320). The fits generalize: crop scales the
    photo by ``resize / crop`` times what makes it cover the rectangle, pad by what makes it fit
    inside, resize stretches it.
    """

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dtype: str = "float32"
    fit: Fit = "crop"
    width: int | None = None

    def __post_init__(self) -> None:
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {', '.join(FITS)}, not {self.fit!r}")
        if self.crop < 1 or (self.width is not None and self.width < 1):
            raise ValueError(f"the input must be at least 1 pixel high and wide, not {self.crop}×{self.width or self.crop}")

    @property
    def size(self) -> tuple[int, int]:
        """The model's input (height, width): ``(crop, crop)``, or ``(crop, width)``."""
        return self.crop, self.width or self.crop

    def placement(self, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """Where a photo of ``size`` (width, height) lies in the model's square: it is resized to
        (width', height') and its top-left corner placed at (left, top) in the square — negative
        for a crop (the photo extends past the square), positive for a pad."""
        width, height = size
        target_h, target_w = self.size
        if self.fit == "resize":
            return target_w, target_h, 0, 0
        if self.fit == "crop":  # for a square: the short side resized to ``resize``
            scale = self.resize / self.crop * max(target_w / width, target_h / height)
            resized = max(target_w, round(width * scale)), max(target_h, round(height * scale))
            return *resized, -((resized[0] - target_w) // 2), -((resized[1] - target_h) // 2)
        scale = min(target_w / width, target_h / height)
        resized = max(1, min(target_w, round(width * scale))), max(1, min(target_h, round(height * scale)))
        return *resized, (target_w - resized[0]) // 2, (target_h - resized[1]) // 2

    def crop_box(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """The region ``(x0, y0, x1, y1)``, in the original image's pixels (``size`` = (width,
        height)), that the model's square covers: inside the photo for ``crop``, the whole photo
        for ``resize``, and past its edges (the padding) for ``pad``. The map of an explanation
        covers exactly this region."""
        width, height = size
        resized_w, resized_h, left, top = self.placement(size)
        sx, sy = resized_w / width, resized_h / height
        target_h, target_w = self.size
        return -left / sx, -top / sy, (target_w - left) / sx, (target_h - top) / sy

    def fit_image(self, image: Image.Image, resample: int = Image.BILINEAR, fill: int | tuple[int, ...] = 0) -> Image.Image:
        """The geometry alone: the photo placed in the model's square, padding (if any) filled
        with ``fill`` (``Image.NEAREST`` and ``fill=0`` for label images such as segmentation
        masks)."""
        resized_w, resized_h, left, top = self.placement(image.size)
        image = image.resize((resized_w, resized_h), resample)
        target_h, target_w = self.size
        if (left, top, resized_w, resized_h) == (0, 0, target_w, target_h):
            return image
        canvas = Image.new(image.mode, (target_w, target_h), fill)
        canvas.paste(image, (left, top))
        return canvas

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """A PIL image → a (3, crop, crop) tensor (or (3, crop, width)); padding is zero (the mean colour)."""
        resized_w, resized_h, left, top = self.placement(image.size)
        image = image.convert("RGB").resize((resized_w, resized_h), Image.BILINEAR)
        pixels = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1) / 255.0
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        normalized = (pixels - mean) / std
        target_h, target_w = self.size
        if (left, top, resized_w, resized_h) != (0, 0, target_w, target_h):
            square = torch.zeros(3, target_h, target_w)
            x0, y0 = max(left, 0), max(top, 0)
            x1, y1 = min(left + resized_w, target_w), min(top + resized_h, target_h)
            square[:, y0:y1, x0:x1] = normalized[:, y0 - top:y1 - top, x0 - left:x1 - left]
            normalized = square
        return normalized.to(getattr(torch, self.dtype))
