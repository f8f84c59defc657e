"""MobileNetV2 (Sandler et al., 2018) with TensorFlow "SAME" padding.

Parameter names follow torchvision's ``MobileNetV2(width_mult=1.0)`` so that torchvision-layout
state dicts load unchanged. Weights converted from TensorFlow need TensorFlow's padding: before
every stride-2 3×3 convolution, pad one pixel on the right and bottom only (and none inside the
convolution). Symmetric padding costs such weights ~9 points of top-1 accuracy.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..data.preprocessing import Preprocessing

__all__ = ["MobileNetV2", "mobilenet_v2"]

# (expansion, output channels, repeats, first stride) — the paper's Table 2.
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class SamePadConv2d(nn.Conv2d):
    """A 3×3 convolution that pads like TensorFlow "SAME": asymmetric when the stride is 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 2:
            x = F.pad(x, (0, 1, 0, 1))
        return super().forward(x)


def _conv_bn_act(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, bn_eps: float = 1e-5) -> nn.Sequential:
    padding = 0 if (kernel == 1 or stride == 2) else kernel // 2
    return nn.Sequential(
        SamePadConv2d(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch, eps=bn_eps),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int, bn_eps: float):
        super().__init__()
        hidden = in_ch * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn_act(in_ch, hidden, 1, bn_eps=bn_eps))
        layers += [
            _conv_bn_act(hidden, hidden, 3, stride, groups=hidden, bn_eps=bn_eps),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch, eps=bn_eps),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 1.0 with torchvision's module names and TensorFlow padding."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, bn_eps: float = 1e-5):
        super().__init__()
        features: list[nn.Module] = [_conv_bn_act(3, 32, 3, 2, bn_eps=bn_eps)]
        in_ch = 32
        for expand, out_ch, repeats, stride in _SETTINGS:
            for index in range(repeats):
                features.append(InvertedResidual(in_ch, out_ch, stride if index == 0 else 1, expand, bn_eps))
                in_ch = out_ch
        features.append(_conv_bn_act(in_ch, 1280, 1, bn_eps=bn_eps))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(x)


def mobilenet_v2(weights: str | Path) -> tuple[MobileNetV2, Preprocessing]:
    """MobileNetV2 1.0 with TensorFlow padding, from a torchvision-layout state dict converted from
    TensorFlow (batch norm folded: eps 1e-5). Input ``x/127.5 − 1``, i.e. mean = std = 0.5."""
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"MobileNetV2 weights not found at {path}")
    model = MobileNetV2()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval(), Preprocessing(resize=256, crop=224, mean=(0.5,) * 3, std=(0.5,) * 3)
