"""Reading photos: files and folders into a batch, remembering each original for display.

Unreadable, truncated or suspiciously large files raise :class:`ImageReadError` naming the file;
when loading many files, the bad ones are reported and skipped, and the rest are kept.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .preprocessing import Preprocessing

__all__ = ["ImageReadError", "ImageBatch", "read_image", "load_images", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jfif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb threshold


class ImageReadError(ValueError):
    """A file that cannot be used as an image; the message names the file and the reason."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale: scale, do not clip
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        return Image.fromarray(np.clip(values / top * 255 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")  # transparent areas on white
    return image.convert("RGB")


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Read one image file as an RGB PIL image (grayscale replicated, 16-bit scaled to 8-bit,
    transparency composited on white). Raises :class:`ImageReadError` for a missing, unreadable
    or truncated file, or one of more than ``max_pixels`` pixels (a decompression bomb)."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "no such file")
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > max_pixels:
                    raise ImageReadError(path, f"{image.width}×{image.height} pixels exceeds the limit of {max_pixels} "
                                               "(a decompression bomb?)")
                image.load()
                return _to_rgb(image)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageReadError(path, f"too many pixels (a decompression bomb?): {error}") from error
    except UnidentifiedImageError as error:
        raise ImageReadError(path, "not an image file Pillow can read") from error
    except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt data
        raise ImageReadError(path, f"corrupt or truncated image ({error})") from error


@dataclass
class ImageBatch:
    """Preprocessed images (B, C, H, W), with the originals and paths of the files that loaded,
    and ``failures``: the files that did not, each with its reason."""

    tensor: torch.Tensor
    originals: list[Image.Image]
    paths: list[Path]
    failures: list[ImageReadError] = field(default_factory=list)


def _expand(sources: Iterable[str | Path]) -> list[Path]:
    paths: list[Path] = []
    for source in sources:
        source = Path(source)
        if source.is_dir():
            paths += sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(source)
    return paths


def load_images(sources: Sequence[str | Path], preprocessing: Preprocessing, skip_errors: bool = True) -> ImageBatch:
    """Files and folders (searched recursively for image files) → an :class:`ImageBatch`.

    With ``skip_errors`` (the default) a bad file is recorded in ``failures`` and the others are
    kept; otherwise the first bad file raises :class:`ImageReadError`.
    """
    originals, paths, failures = [], [], []
    for path in _expand(sources):
        try:
            originals.append(read_image(path))
            paths.append(path)
        except ImageReadError as error:
            if not skip_errors:
                raise
            failures.append(error)
    tensor = torch.stack([preprocessing(image) for image in originals]) if originals else torch.empty(0, 3, preprocessing.crop, preprocessing.crop)
    return ImageBatch(tensor, originals, paths, failures)
