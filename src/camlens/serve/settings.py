"""What a ``camlens serve`` is allowed to do: its models, sample photos and limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.images import MAX_PIXELS

__all__ = ["ServeSettings", "ModelChoice", "EXPLORER_TASKS", "zoo_choices", "check_choice"]

# the explorer explains classes: models that also read text or return boxes need what a form
# cannot give them yet (camlens explain --caption / --question / --box does)
EXPLORER_TASKS = ("classification", "multilabel")


@dataclass(frozen=True)
class ModelChoice:
    """A model the server offers: a name :func:`camlens.load` knows, and the weights file the
    server's owner gave for it (never one a request names)."""

    name: str
    weights: Path | None = None


@dataclass(frozen=True)
class ServeSettings:
    """The limits of one server.

    - ``models``: the only models a request may name (the first is the page's default).
    - ``samples``: photos the page offers; a request picks one by its name in this list, never
      by a path.
    - ``max_upload_bytes``: the largest request body (20 MB); larger ones are refused (413)
      before they are read whole.
    - ``max_pixels``: the most pixels a photo may decode to (50 MP; at most Pillow's own limit of
      89 MP); a decompression bomb is refused (413) from its header, before its pixels are decoded.
    - ``formats``: the image formats an upload is decoded as (Pillow's names); whatever its name
      or declared type, anything else is refused (415). Formats Pillow reads through other
      programs (EPS through Ghostscript) are never tried.
    - ``queue``: per model, how many requests may wait or run at once; more get 503. A model
      explains one request at a time. Each waiting request holds its upload, so the queue
      bounds that memory too: at most ``queue × max_upload_bytes``.
    - ``max_rows``: the most classes one request may explain (422 beyond).
    - ``kept_bytes``: how much the results kept for download (pictures, ``maps.pt``) may take;
      the oldest go first, and the newest is always kept (its pictures are asked for next).
    - ``display_side``: the longest side of the photo and pictures the page shows.
    - ``device``: where the models run (``"auto"``: CUDA when there is one).
    - ``allowed_hosts``: the names a request's ``Host`` header may give (others get 400, which
      stops DNS rebinding); ``("*",)`` allows any, for a server on the network. A ``POST`` from a
      page of another origin is refused (403), so that no web site can use the explorer through
      the browser of the person running it.
    """

    models: tuple[ModelChoice, ...]
    samples: tuple[Path, ...] = ()
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    queue: int = 64
    max_rows: int = 20
    kept_bytes: int = 256 * 1024 * 1024
    display_side: int = 1024
    device: str = "auto"
    formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("a server needs at least one model")
        for name, value, least in (("max_upload_bytes", self.max_upload_bytes, 1), ("max_pixels", self.max_pixels, 1),
                                   ("queue", self.queue, 1), ("max_rows", self.max_rows, 1),
                                   ("kept_bytes", self.kept_bytes, 0), ("display_side", self.display_side, 16)):
            if value < least:
                raise ValueError(f"{name} must be at least {least}, not {value}")
        if self.max_pixels > MAX_PIXELS:
            raise ValueError(f"max_pixels must be at most {MAX_PIXELS} (Pillow's own decompression-bomb limit), "
                             f"not {self.max_pixels}")


def zoo_choices() -> tuple[ModelChoice, ...]:
    """The zoo's models the explorer offers by default: installed, explaining classes, and
    loading without a weights file of the user's."""
    from ..models import ZOO

    return tuple(ModelChoice(entry.name) for entry in ZOO.values()
                 if entry.installed and entry.task in EXPLORER_TASKS and entry.name != "mobilenet-v2")


def check_choice(choice: ModelChoice) -> None:
    """A model name a server may offer, checked before it starts (without loading the model):
    a zoo entry that is installed and explains classes, or a ``torchvision:`` / ``timm:`` name
    its library knows, or an ``hf:`` name. ``ValueError`` or ``ImportError`` says why not."""
    from ..models import ZOO

    source, _, architecture = choice.name.partition(":")
    if choice.name in ZOO:
        entry = ZOO[choice.name]
        if not entry.installed:
            package = entry.requires.replace("_", "-")
            raise ImportError(f"{choice.name} needs the package {package}: pip install {package}")
        if entry.task not in EXPLORER_TASKS:
            raise ValueError(f"{choice.name} is a {entry.task} model; the explorer explains classes "
                             "(camlens explain has --caption, --question and --box)")
        if choice.name == "mobilenet-v2" and choice.weights is None:
            raise ValueError("mobilenet-v2 needs its weights file: --model mobilenet-v2=PATH")
    elif source == "torchvision" and architecture:
        import torchvision

        if architecture not in torchvision.models.list_models():
            raise ValueError(f"torchvision has no model {architecture!r}")
    elif source == "timm" and architecture:
        import timm

        if not timm.is_model(architecture):
            raise ValueError(f"timm has no model {architecture!r}")
    elif source != "hf" or not architecture:
        raise ValueError(f"unknown model {choice.name!r}: a zoo name (camlens models), torchvision:NAME, timm:NAME "
                         "or hf:NAME")
    if choice.weights is not None and not Path(choice.weights).is_file():
        raise ValueError(f"weights file {choice.weights} not found")
