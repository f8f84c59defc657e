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
    """

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dtype: str = "float32"
    fit: Fit = "crop"

    def __post_init__(self) -> None:
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {', '.join(FITS)}, not {self.fit!r}")

    def placement(self, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """Where a photo of ``size`` (width, height) lies in the model's square: it is resized to
        (width', height') and its top-left corner placed at (left, top) in the square — negative
        for a crop (the photo extends past the square), positive for a pad."""
        width, height = size
        if self.fit == "resize":
            return self.crop, self.crop, 0, 0
        if self.fit == "crop":
            scale = self.resize / min(width, height)
            resized = max(self.crop, round(width * scale)), max(self.crop, round(height * scale))
            return *resized, -((resized[0] - self.crop) // 2), -((resized[1] - self.crop) // 2)
        scale = self.crop / max(width, height)
        resized = max(1, min(self.crop, round(width * scale))), max(1, min(self.crop, round(height * scale)))
        return *resized, (self.crop - resized[0]) // 2, (self.crop - resized[1]) // 2

    def crop_box(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """The region ``(x0, y0, x1, y1)``, in the original image's pixels (``size`` = (width,
        height)), that the model's square covers: inside the photo for ``crop``, the whole photo
        for ``resize``, and past its edges (the padding) for ``pad``. The map of an explanation
        covers exactly this region."""
        width, height = size
        resized_w, resized_h, left, top = self.placement(size)
        sx, sy = resized_w / width, resized_h / height
        return -left / sx, -top / sy, (self.crop - left) / sx, (self.crop - top) / sy

    def fit_image(self, image: Image.Image, resample: int = Image.BILINEAR, fill: int | tuple[int, ...] = 0) -> Image.Image:
        """The geometry alone: the photo placed in the model's square, padding (if any) filled
        with ``fill`` (``Image.NEAREST`` and ``fill=0`` for label images such as segmentation
        masks)."""
        resized_w, resized_h, left, top = self.placement(image.size)
        image = image.resize((resized_w, resized_h), resample)
        if (left, top, resized_w, resized_h) == (0, 0, self.crop, self.crop):
            return image
        canvas = Image.new(image.mode, (self.crop, self.crop), fill)
        canvas.paste(image, (left, top))
        return canvas

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """A PIL image → a (3, crop, crop) tensor; padding is zero (the mean colour)."""
        resized_w, resized_h, left, top = self.placement(image.size)
        image = image.convert("RGB").resize((resized_w, resized_h), Image.BILINEAR)
        pixels = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1) / 255.0
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        normalized = (pixels - mean) / std
        if (left, top, resized_w, resized_h) != (0, 0, self.crop, self.crop):
            square = torch.zeros(3, self.crop, self.crop)
            x0, y0 = max(left, 0), max(top, 0)
            x1, y1 = min(left + resized_w, self.crop), min(top + resized_h, self.crop)
            square[:, y0:y1, x0:x1] = normalized[:, y0 - top:y1 - top, x0 - left:x1 - left]
            normalized = square
        return normalized.to(getattr(torch, self.dtype))
