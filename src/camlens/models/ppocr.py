r"""PaddleOCR's PP-OCRv4 (Chinese and English) from RapidOCR's ONNX files, converted to PyTorch by
:func:`~camlens.models.from_onnx.load_onnx` and checked against onnxruntime.
``pip install --no-deps rapidocr-onnxruntime==1.4.4 && pip install onnx onnx2torch onnxsim onnxruntime``
(the package's other dependencies, OpenCV among them, are not needed: only its model files are read).

**Text detection** (:func:`ppocr_detector`, task ``"text-detection"``). DBNet (Liao et al., AAAI
2020) over a PP-LCNetV3 backbone: the output is the text probability map (B, 1, H, W) at the
input's resolution, so that a word is explained with :class:`~camlens.targets.BoxRegion` over it;
:func:`word_boxes` turns it into word boxes with DBNet's settings. :func:`detector_input` prepares a
photo as RapidOCR does (short side up to 736 pixels, each side a multiple of 32).

**Reading** (:func:`ppocr_reader`, task ``"text-reading"``). SVTR-LCNet: a convolutional network
pools a 48-pixel-high crop into one row of W/8 columns, two attention blocks mix that row, and a
linear layer gives per-step scores over the CTC blank (token 0), the 6623 characters of the file's
``character`` metadata and a space (RapidOCR's ``CTCLabelDecode``). Its reshapes fix the input at
48 × 320 (:data:`READER_WIDTH`; any batch). The file ends in a softmax; the converted model ends in
a **log**-softmax instead, so that its output is per-step log-probabilities (B, 40, 6625) —
``exp`` of it is onnxruntime's output. :class:`~camlens.targets.CTCTarget` with its default
``score="log_softmax"`` then explains :math:`\log p_t(c)` (a log-softmax of log-probabilities
is themselves): the gradient of a probability vanishes where the reader is sure
(:math:`\partial p / \partial z = p(1-p)`), that of its logarithm does not. :func:`word_crop` cuts
a word out of a photo as RapidOCR does, :func:`read` decodes.

Both take RGB like every camlens model: PaddleOCR's networks read OpenCV's BGR, so the first
convolution's input channels are reversed after the check against onnxruntime (exact: mean and
std are 0.5 for every channel).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.geometry import Box
from ..data.preprocessing import Preprocessing
from .from_onnx import INSTALL as ONNX_INSTALL
from .from_onnx import load_onnx
from .loaded import LoadedModel
from .text_boxes import text_boxes

__all__ = [
    "DETECTOR_LAYER", "DETECTOR_PREPROCESSING", "READER_LAYER", "READER_PREPROCESSING", "READER_HEIGHT",
    "READER_WIDTH", "INSTALL", "ppocr_detector", "ppocr_reader", "detector_input", "word_boxes", "word_crop",
    "model_file",
]

INSTALL = f"pip install --no-deps rapidocr-onnxruntime==1.4.4 && {ONNX_INSTALL}"
DETECTOR_FILE = "ch_PP-OCRv4_det_infer.onnx"
READER_FILE = "ch_PP-OCRv4_rec_infer.onnx"
MEAN = STD = (0.5, 0.5, 0.5)  # PaddleOCR's: x / 127.5 − 1

# RapidOCR's limit: the short side is brought up to 736 pixels (never down); see detector_input.
DETECTOR_SIDE = 736
# For a whole photo in one square: fit="pad" keeps it undistorted, long side 736 (padding is the
# mean colour, which DBNet reads as background).
DETECTOR_PREPROCESSING = Preprocessing(resize=DETECTOR_SIDE, crop=DETECTOR_SIDE, mean=MEAN, std=STD, fit="pad")
# Measured (docs/ppocr_maps.py, 24 words of two photos): the head's first ReLU, at 1/4 of the
# input's resolution, the last layer before the two transposed convolutions that paint the map.
# A word's LayerCAM and HiResCAM keep 97% of their energy in its box (3% in the other words'),
# peak in it for 24 of 24 words; Grad-CAM's channel weights spread over every word (8% in the box).
# The fused FPN features (p2o/Concat/0) give 95%; the 1/2-resolution ReLU (p2o/Relu/11) 99%, but its
# map is little more than the output painted back.
DETECTOR_LAYER = "p2o/Relu/10"

READER_HEIGHT, READER_WIDTH = 48, 320
# A photo of one word as the reader's 48 × 320 input: scaled to fit, centred, padded with zeros
# (word_crop cuts a word out of a photo and pads on the right, as RapidOCR does).
READER_PREPROCESSING = Preprocessing(resize=READER_HEIGHT, crop=READER_HEIGHT, mean=MEAN, std=STD, fit="pad",
                                     width=READER_WIDTH)
# Measured (docs/ppocr_maps.py, 20 words of two or more characters): the backbone's output
# (480 × 3 × 80, 4-pixel columns), before the pooling to one row and the attention blocks. Each
# character's LayerCAM peaks in reading order (Spearman ≥ 0.9 for 20 of 20 words), HiResCAM's for
# 19 (the exception, "33", swaps two peaks 5 pixels apart); Grad-CAM's for 4. LayerCAM keeps that
# order at every layer measured but the one right after the attention blocks.
READER_LAYER = "p2o/Add/230"


def model_file(name: str) -> Path:
    """The path of one of RapidOCR's model files (found without importing RapidOCR, whose
    dependencies are not needed)."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"PP-OCR's models come from RapidOCR's package: {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: this RapidOCR has other model files ({INSTALL})")
    return path


def _read_rgb(module: nn.Module) -> None:
    """Reverse the input channels of the convolution that reads the input (BGR → RGB)."""
    graph = module.graph
    placeholder = next(node for node in graph.nodes if node.op == "placeholder")
    readers = list(placeholder.users)
    first = module.get_submodule(readers[0].target) if len(readers) == 1 and readers[0].op == "call_module" else None
    if not isinstance(first, nn.Conv2d) or first.groups != 1:
        raise ValueError("this PP-OCR file does not start with a convolution of its input; cannot make it read RGB")
    with torch.no_grad():
        first.weight.copy_(first.weight.flip(1))


def _log_probabilities(module: nn.Module) -> None:
    """The graph's final softmax becomes a log-softmax (see the module docstring)."""
    output = next(node for node in module.graph.nodes if node.op == "output")
    last = output.args[0]
    softmax = module.get_submodule(last.target) if getattr(last, "op", None) == "call_module" else None
    if softmax is None or not hasattr(softmax, "is_log"):
        raise ValueError("this PP-OCR reader does not end in a softmax")
    softmax.is_log = True


def ppocr_detector(weights: str | Path | None = None) -> LoadedModel:
    """PP-OCRv4's DBNet text detector (``ch_PP-OCRv4_det_infer.onnx``, Apache-2.0): images
    (B, 3, H, W), H and W multiples of 32, → text probability (B, 1, H, W). ``weights``: another
    ONNX file of a PP-OCR DBNet."""
    path = Path(weights) if weights is not None else model_file(DETECTOR_FILE)
    model = load_onnx(path)
    _read_rgb(model)
    return LoadedModel("ppocr-det", model, DETECTOR_PREPROCESSING, ("text",), DETECTOR_LAYER, task="text-detection")


def reader_characters(path: str | Path) -> tuple[str, ...]:
    """The reader's tokens: the CTC blank (``"blank"``), the characters of the ONNX file's
    ``character`` metadata (one a line, as RapidOCR splits them) and a space."""
    import onnx

    metadata = {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
    if "character" not in metadata:
        raise ValueError(f"{path} holds no 'character' metadata: its characters are unknown")
    return ("blank", *metadata["character"].splitlines(), " ")


def ppocr_reader(weights: str | Path | None = None) -> LoadedModel:
    """PP-OCRv4's SVTR-LCNet reader (``ch_PP-OCRv4_rec_infer.onnx``, Apache-2.0): word crops
    (B, 3, 48, 320) (:func:`word_crop`) → per-step log-probabilities (B, 40, 6625). ``weights``:
    another ONNX file of a PP-OCRv4 reader (``en_PP-OCRv4_rec_infer.onnx``, say), with its
    characters in its metadata."""
    path = Path(weights) if weights is not None else model_file(READER_FILE)
    characters = reader_characters(path)
    model = load_onnx(path, input_shape=(3, READER_HEIGHT, READER_WIDTH))
    _read_rgb(model)
    _log_probabilities(model)
    with torch.no_grad():
        vocabulary = model(torch.zeros(1, 3, READER_HEIGHT, READER_WIDTH)).shape[-1]
    if vocabulary != len(characters):
        raise ValueError(f"{path} scores {vocabulary} tokens but its metadata gives {len(characters)} (with blank "
                         "and space)")
    return LoadedModel("ppocr-rec", model, READER_PREPROCESSING, characters, READER_LAYER, task="text-reading")


def _normalized(pixels: np.ndarray) -> torch.Tensor:
    """RGB pixels (H, W, 3) in 0..255 → (3, H, W), :math:`x / 127.5 − 1`."""
    return (torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1) / 255.0 - 0.5) / 0.5


def detector_input(photo: Image.Image, side: int = DETECTOR_SIDE) -> torch.Tensor:
    """The detector's input (1, 3, H, W) for a photo, as RapidOCR makes it (``limit_type:
    min``): scaled so that its short side is ``side`` where it is shorter (never down), then each
    side rounded to a multiple of 32 (the aspect ratio changes by under 32 pixels).
    Boxes found on it scale back to the photo by its size over the input's."""
    width, height = photo.size
    ratio = max(1.0, side / min(width, height))
    size = (max(32, round(int(width * ratio) / 32) * 32), max(32, round(int(height * ratio) / 32) * 32))
    return _normalized(np.asarray(photo.convert("RGB").resize(size, Image.BILINEAR)))[None]


def word_boxes(output: torch.Tensor, low: float = 0.3, mean: float = 0.5, unclip: float = 1.6,
               min_pixels: int = 10) -> list[list[Box]]:
    """The word boxes ``(x0, y0, x1, y1)`` of each image, in the input's pixels, from DBNet's
    probability map (B, 1, H, W) by :func:`text_boxes` with RapidOCR's settings: text where the
    probability reaches ``low`` (0.3), a word where its mean reaches ``mean`` (0.5), grown by
    the unclip ratio 1.6 (DBNet shrank its text regions in training by about that much)."""
    if output.dim() != 4 or output.shape[1] != 1:
        raise ValueError(f"DBNet's output is (B, 1, H, W); got shape {tuple(output.shape)}")
    return [text_boxes(probability[0], low=low, mean=mean, unclip=unclip, min_pixels=min_pixels)
            for probability in output]


def word_crop(photo: Image.Image, box: Box) -> tuple[torch.Tensor, int]:
    """The reader's input (1, 3, 48, 320) for the word in ``box`` (the photo's pixels), as RapidOCR
    makes it: the box cut out (turned a quarter when it is 1.5 times higher than wide), resized
    to height 48 keeping its aspect ratio (squeezed to 320 if wider), normalized, and padded on
    the right with zeros to 320. Also the width the word takes (the rest is padding)."""
    x0, y0, x1, y1 = box
    left, top = max(0, math.floor(x0)), max(0, math.floor(y0))
    right, bottom = min(photo.width, math.ceil(x1)), min(photo.height, math.ceil(y1))
    if right <= left or bottom <= top:
        raise ValueError(f"box {box} lies outside the photo of size {photo.size}")
    cut = photo.convert("RGB").crop((left, top, right, bottom))
    if cut.height >= 1.5 * cut.width:
        cut = cut.transpose(Image.Transpose.ROTATE_90)
    width = min(READER_WIDTH, math.ceil(READER_HEIGHT * cut.width / cut.height))
    crop = torch.zeros(1, 3, READER_HEIGHT, READER_WIDTH)
    crop[0, :, :, :width] = _normalized(np.asarray(cut.resize((width, READER_HEIGHT), Image.BILINEAR)))
    return crop, width


