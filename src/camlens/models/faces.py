r"""MTCNN's three networks (Zhang et al., "Joint Face Detection and Alignment using Multitask
Cascaded Convolutional Networks", 2016; the port and weights of facenet-pytorch, MIT) as models to
explain, and the detections and crops that lay their maps back on the photo.

MTCNN finds faces in three stages: P-Net slides over a pyramid of the photo and gives a map of face
probabilities (one pixel per 12 × 12 window, stride 2); R-Net (24 × 24 px) and O-Net (48 × 48 px)
score square crops around the candidates and refine their boxes. The zoo's wrappers return what is
worth explaining:

- ``mtcnn-pnet`` (:class:`FaceProbabilityMap`): the face-probability map (B, 1, h, w), softmax
  channel 1, for :class:`~camlens.targets.BoxRegion` over a face's box;
- ``mtcnn-rnet``, ``mtcnn-onet`` (:class:`FaceLogits`): the two logits (B, 2) of ("no face",
  "face") — the scores *before* MTCNN's softmax, as Grad-CAM explains a classifier's; their
  softmax is MTCNN's face probability. A class target (``1`` or ``"face"``) works.

The inner network is ``net``: its layers are ``net.conv1`` … (``net.prelu3`` is the third conv
block's output). Inputs are MTCNN's :math:`(x_{255} - 127.5) / 128`, i.e. mean 0.5 and std
128/255 on [0, 1] pixels.

:func:`detect_faces` runs facenet-pytorch's MTCNN and keeps, for each face, the square its O-Net
was shown; :func:`face_input` cuts that square exactly as MTCNN does, so an R-Net or O-Net map lies
on the photo where the network looked. Within that crop the face is MTCNN's returned box — O-Net's
own regression of the square — which is smaller than the crop (about three quarters of it for
Grace Hopper's face): "inside the box" for an O-Net map means inside that refined box
(:func:`box_in_crop`), not inside the crop, which would always hold. There Grad-CAM at O-Net's last
conv block peaks on the face with 86% of its energy inside (a flat map: 74%), while at every earlier
block it peaks at the crop's left or right edge.

For P-Net the face is explained as :class:`~camlens.targets.BoxRegion` (its box in the input's
pixels) over the probability map, at a scale where the face is about 20 px (:func:`pnet_size`):
Grad-CAM at its last conv block peaks inside the box with 92% of its energy there; at 224 px, where
a portrait's face is far larger than P-Net's 12-pixel window, it does not localize.
"""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.geometry import Box
from ..data.preprocessing import Preprocessing
from .loaded import LoadedModel
from .state import load_state

__all__ = ["FACE_CLASSES", "PNET_LAYER", "RNET_LAYER", "ONET_LAYER", "Face", "FaceLogits", "FaceProbabilityMap",
           "box_in_crop", "detect_faces", "face_input", "mtcnn_onet", "mtcnn_pnet", "mtcnn_rnet", "pnet_preprocessing",
           "pnet_size"]

FACE_CLASSES = ("no face", "face")
MTCNN_MEAN = (0.5, 0.5, 0.5)  # (x·255 − 127.5)/128 = (x − 0.5)/(128/255)
MTCNN_STD = (128 / 255,) * 3
PNET_SIZE = 224  # a whole photo of small faces: P-Net's window is 12 px, faces of 12–30 px localize
RNET_SIZE, ONET_SIZE = 24, 48
# The default layers, chosen by measurement on Grace Hopper's photo (tests/models/test_faces.py checks
# P-Net's and O-Net's): where Grad-CAM's map of the face score peaks inside the face's box with most of its
# energy there. R-Net's is the weakest choice (its last block's Grad-CAM is all zero there)
PNET_LAYER = "net.prelu3"
RNET_LAYER = "net.prelu2"
ONET_LAYER = "net.prelu4"
# its package pins old torch and numpy but runs on today's: installed without its dependencies
INSTALL = "pip install --no-deps facenet-pytorch==2.6.0"


def _facenet():
    """facenet-pytorch's MTCNN module, or an ImportError that says how to install it."""
    if importlib.util.find_spec("facenet_pytorch") is None:
        raise ImportError(f"the MTCNN face networks need facenet-pytorch: {INSTALL}")
    from facenet_pytorch.models import mtcnn

    return mtcnn


def _network(kind: str, weights: str | Path | None) -> nn.Module:
    """facenet-pytorch's ``PNet``/``RNet``/``ONet`` with its shipped weights (read with
    ``weights_only=True``) or the state dict at ``weights``."""
    mtcnn = _facenet()
    net = getattr(mtcnn, kind)(pretrained=False)
    if weights is None:
        path = Path(mtcnn.__file__).parent.parent / "data" / f"{kind.lower()}.pt"
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        load_state(net, weights, f"MTCNN {kind}")
    return net.eval()


class FaceProbabilityMap(nn.Module):
    """P-Net → its face-probability map (B, 1, h, w): softmax channel 1 of the classification
    head, one pixel per 12 × 12 window of the input at stride 2 (the box regression is dropped)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _, probabilities = self.net(images)
        return probabilities[:, 1:2]


class FaceLogits(nn.Module):
    """R-Net or O-Net → the logits (B, 2) of ("no face", "face"): the network's own forward with its
    final softmax replaced by the identity, so that a class target explains the pre-softmax score
    (which does not saturate at MTCNN's confident 0.9999) and ``softmax`` gives MTCNN's
    probability. The box regression and O-Net's landmarks are dropped."""

    def __init__(self, net: nn.Module):
        super().__init__()
        net = copy.deepcopy(net)  # the caller's network keeps its softmax
        softmax = next(name for name, module in net.named_children() if isinstance(module, nn.Softmax))
        setattr(net, softmax, nn.Identity())
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)[-1]


def pnet_preprocessing(size: int = PNET_SIZE) -> Preprocessing:
    """The whole photo, padded to a ``size`` square (aspect kept, as MTCNN's pyramid does), in
    MTCNN's normalization. P-Net scores 12 × 12 windows: a face scores high, and its map localizes,
    when it is about 12 to 30 input pixels across — at 224, faces a tenth to a twentieth of the
    photo (a group); for one face that fills a portrait, a smaller size (:func:`pnet_size`)."""
    return Preprocessing(resize=size, crop=size, mean=MTCNN_MEAN, std=MTCNN_STD, fit="pad")


def pnet_size(box: Box, photo_size: tuple[int, int], face_pixels: int = 20) -> int:
    """The P-Net input size (:func:`pnet_preprocessing`) at which the face ``box`` (in the photo's
    pixels; ``photo_size`` is (width, height)) is ``face_pixels`` across on its longer side: the
    scale of MTCNN's pyramid that finds it (its default smallest face, 20 px, is seen at 12)."""
    side = max(box[2] - box[0], box[3] - box[1])
    if side <= 0:
        raise ValueError(f"the box {box} has no size")
    return max(12, round(max(photo_size) * face_pixels / side))


def mtcnn_pnet(weights: str | Path | None = None) -> LoadedModel:
    """MTCNN's P-Net: a face-probability map over the whole photo, 224 px (task
    ``"face-detection"``); explain a face with ``BoxRegion(box, (224, 224))``, the box in the
    input's pixels (:func:`~camlens.data.geometry.boxes_in_input`; on P-Net's geometry see
    :class:`~camlens.targets.BoxRegion`). ``weights``: a state dict of
    facenet-pytorch's ``PNet`` to use instead of the shipped one (likewise for R-Net and O-Net)."""
    model = FaceProbabilityMap(_network("PNet", weights)).eval()
    return LoadedModel("mtcnn-pnet", model, pnet_preprocessing(), FACE_CLASSES[1:], PNET_LAYER, task="face-detection")


def _scorer(kind: str, size: int, layer: str, weights: str | Path | None) -> LoadedModel:
    """R-Net or O-Net as a two-class model of ``size`` × ``size`` crops (:func:`face_input`)."""
    preprocessing = Preprocessing(size, size, MTCNN_MEAN, MTCNN_STD, fit="resize")
    model = FaceLogits(_network(kind, weights)).eval()
    return LoadedModel(f"mtcnn-{kind[0].lower()}net", model, preprocessing, FACE_CLASSES, layer, task="face-scoring")


def mtcnn_rnet(weights: str | Path | None = None) -> LoadedModel:
    """MTCNN's R-Net: the face logits of a 24 × 24 crop (task ``"face-scoring"``; see :func:`face_input`)."""
    return _scorer("RNet", RNET_SIZE, RNET_LAYER, weights)


def mtcnn_onet(weights: str | Path | None = None) -> LoadedModel:
    """MTCNN's O-Net: the face logits of a 48 × 48 crop (task ``"face-scoring"``; see :func:`face_input`)."""
    return _scorer("ONet", ONET_SIZE, ONET_LAYER, weights)


@dataclass(frozen=True)
class Face:
    """One face MTCNN found: its ``box`` (x0, y0, x1, y1) and ``probability`` as MTCNN returns
    them, and the ``square`` (x0, y0, x1, y1) O-Net was shown — R-Net's refined box made square,
    which O-Net's regression turned into ``box``. All in the photo's pixels."""

    box: Box
    probability: float
    square: Box


class _Recording(nn.Module):
    """O-Net, recording what it outputs for each batch of candidates."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.outputs: list[tuple[torch.Tensor, ...]] = []

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.net(images)
        self.outputs.append(outputs)
        return outputs


def detect_faces(photo: Image.Image, min_face_size: int = 20,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)) -> list[Face]:
    r"""The faces facenet-pytorch's ``MTCNN(keep_all=True)`` finds in ``photo`` on the CPU, largest
    first, as plain floats.

    The square each face's O-Net saw is not among MTCNN's results; it is recovered from the box by
    inverting O-Net's regression :math:`b = s + r \cdot (\ell + 1)` (:math:`\ell` the square's
    side, :math:`r` O-Net's regression output for the candidate whose probability is the face's)."""
    mtcnn_module = _facenet()
    detector = mtcnn_module.MTCNN(keep_all=True, device=torch.device("cpu"), min_face_size=min_face_size,
                                  thresholds=list(thresholds))
    recording = _Recording(detector.onet)
    detector.onet = recording
    boxes, probabilities = detector.detect(photo.convert("RGB"))
    if boxes is None:
        return []
    boxes, probabilities = np.asarray(boxes, dtype=float), np.asarray(probabilities, dtype=float)
    regressions = torch.cat([outputs[0] for outputs in recording.outputs]).double()
    scores = torch.cat([outputs[2][:, 1] for outputs in recording.outputs])
    faces = []
    for box, probability in zip(boxes, probabilities):
        candidate = int((scores.double() - probability).abs().argmin())  # the same float32 value
        faces.append(Face(tuple(float(v) for v in box), float(probability),
                          _square(box, regressions[candidate].numpy())))
    return faces


def _square(box: np.ndarray, regression: np.ndarray) -> Box:
    r"""The square ``s`` that O-Net's ``regression`` (dx0, dy0, dx1, dy1) turned into ``box``
    (facenet-pytorch's ``bbreg``: :math:`b_0 = s_0 + r_0 (\ell + 1)`, :math:`b_2 = s_0 + \ell + r_2 (\ell + 1)`),
    solved for the side :math:`\ell` and the corner :math:`s_0` on each axis."""
    side_x = (box[2] - box[0] + 1) / (1 + regression[2] - regression[0]) - 1
    side_y = (box[3] - box[1] + 1) / (1 + regression[3] - regression[1]) - 1
    side = (side_x + side_y) / 2
    x0, y0 = box[0] - regression[0] * (side + 1), box[1] - regression[1] * (side + 1)
    return float(x0), float(y0), float(x0 + side), float(y0 + side)


def face_input(photo: Image.Image, face: Face, size: int = ONET_SIZE) -> tuple[torch.Tensor, Box]:
    """The input (1, 3, size, size) MTCNN gives its network for ``face``'s square (``size`` 48 for
    O-Net, 24 for R-Net), and the region (x0, y0, x1, y1) of the photo it shows. R-Net itself
    scored an earlier box (P-Net's, before R-Net refined it); at 24 px this is O-Net's square cut
    the way MTCNN cuts R-Net's crops.

    As facenet-pytorch's ``detect_face``: the square's corners truncated to integers, clipped to
    the photo (so a face at the border gives a stretched, not padded, crop), area-resampled to
    ``size`` and normalized as :math:`(x - 127.5) / 128`."""
    from torch.nn.functional import interpolate

    pixels = torch.from_numpy(np.asarray(photo.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)[None].float()
    height, width = pixels.shape[-2:]
    x0, y0, x1, y1 = (int(v) for v in face.square)  # int() truncates toward zero, as MTCNN's trunc()
    x0, y0, x1, y1 = max(x0, 1) - 1, max(y0, 1) - 1, min(x1, width), min(y1, height)
    crop = interpolate(pixels[:, :, y0:y1, x0:x1], size=(size, size), mode="area")
    return (crop - 127.5) * 0.0078125, (float(x0), float(y0), float(x1), float(y1))


def box_in_crop(box: Box, region: Box, size: int) -> Box:
    """``box`` in the photo's pixels → in the pixels of a ``size`` × ``size`` input that shows the
    photo's ``region`` (as :func:`face_input` returns it)."""
    x0, y0, x1, y1 = region
    sx, sy = size / (x1 - x0), size / (y1 - y0)
    return (box[0] - x0) * sx, (box[1] - y0) * sy, (box[2] - x0) * sx, (box[3] - y0) * sy
