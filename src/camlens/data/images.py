"""Reading photos: files and folders into a batch, remembering each original for display.

Unreadable, truncated or suspiciously large files raise :class:`ImageReadError` naming the file;
when loading many files, the bad ones are reported and skipped, and the rest are kept.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .preprocessing import Preprocessing
from .sources import image_paths

__all__ = ["ImageReadError", "ImageBatch", "read_image", "decode_image", "load_images", "fit_within"]

MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb threshold
_OPENING = threading.Lock()


class ImageReadError(ValueError):
    """A file that cannot be used as an image; the message names the file and the reason.
    ``kind`` sorts the reasons: ``"missing"`` (no such file, or a folder), ``"not_image"`` (no
    format it is allowed to be), ``"too_large"`` (more pixels than allowed) or ``"corrupt"``
    (an image format, but truncated or damaged data)."""

    def __init__(self, path: Path | str, reason: str, kind: str = "corrupt"):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.kind = kind


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
        raise ImageReadError(path, "no such file", "missing")
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file", "missing")
    return _decode(path, path, max_pixels, None)


def decode_image(data: bytes, name: str = "upload", max_pixels: int = MAX_PIXELS,
                 formats: Sequence[str] | None = None) -> Image.Image:
    """:func:`read_image` for bytes in memory (an upload): what they are is found by decoding
    them, never from a name or a declared type; ``formats`` (Pillow's names, ``"JPEG"``,
    ``"PNG"``) are the only ones tried, where given. ``name`` is for messages."""
    if not data:
        raise ImageReadError(name, "is empty", "not_image")
    return _decode(io.BytesIO(data), name, max_pixels, formats)


def _decode(source: Path | io.BytesIO, name: Path | str, max_pixels: int, formats: Sequence[str] | None) -> Image.Image:
    try:
        # warnings filters are process-wide: threads reading photos set them one at a time, and
        # only around opening (where Pillow warns); decoding runs in parallel
        with _OPENING, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(source, formats=formats)
        with opened as image:
            if image.width * image.height > max_pixels:
                raise ImageReadError(name, f"{image.width}×{image.height} pixels exceeds the limit of {max_pixels} "
                                           "(a decompression bomb?)", "too_large")
            image.load()
            return _to_rgb(image)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageReadError(name, f"too many pixels (a decompression bomb?): {error}", "too_large") from error
    except UnidentifiedImageError as error:
        allowed = f" ({', '.join(formats)})" if formats else ""
        raise ImageReadError(name, f"not an image file Pillow can read{allowed}", "not_image") from error
    except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt data
        raise ImageReadError(name, f"corrupt or truncated image ({error})") from error


@dataclass
class ImageBatch:
    """Preprocessed images (B, C, H, W), with the originals and paths of the files that loaded,
    and ``failures``: the files that did not, each with its reason."""

    tensor: torch.Tensor
    originals: list[Image.Image]
    paths: list[Path]
    failures: list[ImageReadError] = field(default_factory=list)


def fit_within(image: Image.Image, max_side: int | None) -> tuple[Image.Image, float]:
    """``image`` scaled down (never up) so that its longest side is at most ``max_side`` pixels
    (``None`` or 0: as it is), and the scale applied. Pictures of a 12-megapixel photo need not
    be made at 12 megapixels."""
    longest = max(image.size)
    if not max_side or longest <= max_side:
        return image, 1.0
    scale = max_side / longest
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.BILINEAR, reducing_gap=2.0), scale


def load_images(sources: Sequence[str | Path], preprocessing: Preprocessing, skip_errors: bool = True) -> ImageBatch:
    """Files, folders, patterns and CSV lists (see :func:`~camlens.data.sources.image_paths`) →
    an :class:`ImageBatch`, every image in memory at once; for many photos, stream them with
    :func:`~camlens.data.stream.stream_photos`.

    With ``skip_errors`` (the default) a bad file is recorded in ``failures`` and the others are
    kept; otherwise the first bad file raises :class:`ImageReadError`.
    """
    originals, paths, failures = [], [], []
    for path in image_paths(sources):
        try:
            originals.append(read_image(path))
            paths.append(path)
        except ImageReadError as error:
            if not skip_errors:
                raise
            failures.append(error)
    tensor = torch.stack([preprocessing(image) for image in originals]) if originals else torch.empty(0, 3, *preprocessing.size)
    return ImageBatch(tensor, originals, paths, failures)
