"""From a photo to the model's input: resize, center-crop, scale and normalize, and where the
crop lies in the original photo (for overlays and for carrying annotations through)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

__all__ = ["Preprocessing"]


@dataclass(frozen=True)
class Preprocessing:
    """Resize the short side to ``resize``, center-crop ``crop``×``crop``, scale to [0, 1], then
    ``(x − mean) / std`` per channel, as a tensor of ``dtype`` (the name of a torch float type:
    ``"float64"`` for reference computations with a model cast to float64)."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dtype: str = "float32"

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) an image of that size is resized to before the center crop."""
        scale = self.resize / min(width, height)
        return max(self.crop, round(width * scale)), max(self.crop, round(height * scale))

    def crop_box(self, size: tuple[int, int]) -> tuple[float, float, float, float]:
        """The region ``(x0, y0, x1, y1)``, in the original image's pixels (``size`` = (width,
        height)), that the model sees after resizing and center-cropping."""
        width, height = size
        resized_w, resized_h = self.resized_size(width, height)
        left, top = (resized_w - self.crop) // 2, (resized_h - self.crop) // 2
        sx, sy = resized_w / width, resized_h / height
        return left / sx, top / sy, (left + self.crop) / sx, (top + self.crop) / sy

    def resize_and_crop(self, image: Image.Image, resample: int = Image.BILINEAR) -> Image.Image:
        """The geometry alone: resize the short side, then center-crop (``Image.NEAREST`` for
        label images such as segmentation masks)."""
        image = image.resize(self.resized_size(*image.size), resample)
        left, top = (image.width - self.crop) // 2, (image.height - self.crop) // 2
        return image.crop((left, top, left + self.crop, top + self.crop))

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """A PIL image → a (3, crop, crop) float tensor."""
        image = self.resize_and_crop(image.convert("RGB"))
        pixels = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1) / 255.0
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return ((pixels - mean) / std).to(getattr(torch, self.dtype))
