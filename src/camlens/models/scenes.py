r"""Small reference models trained on :mod:`camlens.data.scenes`, where the ground truth is known.

No captioning, question-answering or multi-object detection weights exist offline, so camlens
trains its own, small and fast, on seeded scenes: a multi-label classifier, a captioner (CNN +
GRU with attention), a question-answering model (CNN + question encoder with attention) and a
detector (a dense centre heatmap, CenterNet-style, decoded into torchvision-style detections).
All four share one CNN design whose last block, ``backbone.layer4`` (32×32 maps on a 64×64
scene), is the layer to explain; what follows it is the task's head: the captioner and the
question-answering model attend over the feature map (as most of today's models do, and unlike
the pooled image vector of the Grad-CAM paper's models, which could not learn these tasks in a
minute here), and the detector's class heatmaps are one linear map of the features per position.

Training, caching and held-out accuracy are :mod:`camlens.models.scene_training`'s.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.fx
from torch import nn
from torch.nn import functional as F

from ..data.scenes import ANSWERS, LABELS, SHAPES, VOCABULARY
from ..targets import CaptionTarget

__all__ = [
    "Backbone", "SceneClassifier", "SceneViT", "SceneCaptioner", "SceneVQA", "SceneDetector", "SCENE_TASKS", "CAPTION_LENGTH",
    "QUESTION_LENGTH", "LAYER", "caption_tokens", "caption_prompt", "question_tokens", "decode_detections",
    "load_scene_weights",
]

SIZE = 64
CAPTION_LENGTH = 16   # the longest caption, 4 objects: 15 words and <eos>
QUESTION_LENGTH = 8
LAYER = "backbone.layer4"
STRIDE = 2             # input pixels per cell of the backbone's maps


def _block(inputs: int, outputs: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU())


class Backbone(nn.Sequential):
    """64×64 → (B, 4·width, 32, 32): five 3×3 conv blocks, one of stride 2. Measured on held-out
    scenes, a second stride (16×16 maps) puts the classifier's colour maps on the object's rim or
    just outside it (Grad-CAM pointing 0.89 against 0.93 here)."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.stem = _block(3, width, 1)
        self.layer1 = _block(width, width, 2)
        self.layer2 = _block(width, 2 * width, 1)
        self.layer3 = _block(2 * width, 2 * width, 1)
        self.layer4 = _block(2 * width, 4 * width, 1)
        self.channels = 4 * width

    def both(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The outputs of ``layer3`` (B, 2·width, 32, 32) and of ``layer4`` (B, 4·width, 32, 32)."""
        lower = self.layer3(self.layer2(self.layer1(self.stem(images))))
        return lower, self.layer4(lower)


class SceneClassifier(nn.Module):
    """Multi-label: one logit per label of :data:`~camlens.data.scenes.LABELS` (shapes, colours);
    global average pooling then a linear layer, so CAM applies."""

    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.backbone.channels, len(LABELS))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The pooled features (B, C): the embedding of a scene."""
        return self.pool(self.backbone(images)).flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(images))


class _PatchEmbedding(nn.Module):
    """``patch_size`` × ``patch_size`` patches → one token each, row by row (B, h·w, width),
    through a small convolutional stem (two stride-2 3×3 convolutions, then one of stride
    ``patch_size / 4``): with it a ViT learns from a few thousand scenes in a minute, as Xiao et
    al. found (*Early Convolutions Help Transformers See Better*, NeurIPS 2021); with a single
    linear patch projection it reached 0.38 exact held-out accuracy in the same time."""

    def __init__(self, patch_size: int, width: int):
        super().__init__()
        self.patch_size = patch_size
        self.stem = nn.Sequential(_block(3, 32, 2), _block(32, 64, 2))
        self.proj = nn.Conv2d(64, width, patch_size // 4, patch_size // 4)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.stem(images)).flatten(2).transpose(1, 2)


class SceneViT(nn.Module):
    """A vision transformer for the classifier's task (multi-label, the same labels and data):
    64×64 → 8×8 patches of 8 px and a class token, three pre-norm encoder blocks of width 96
    (4 heads, PyTorch's ``nn.TransformerEncoderLayer``), a linear head on the class token. It
    declares its layout as timm does (``patch_embed.patch_size``, ``num_prefix_tokens``), so
    camlens lays its tokens on the 8×8 grid by itself."""

    num_prefix_tokens = 1

    def __init__(self, width: int = 96, depth: int = 3, heads: int = 4, patch_size: int = 8):
        super().__init__()
        self.patch_embed = _PatchEmbedding(patch_size, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + (SIZE // patch_size) ** 2, width) * 0.02)
        self.blocks = nn.Sequential(*[
            nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=True)
            for _ in range(depth)
        ])
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, len(LABELS))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(images)
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(tokens))[:, 0])


class _Attention(nn.Module):
    """Additive attention over the h×w positions of a feature map, steered by a query vector;
    ``keys`` (a 1×1 convolution of a feature map with ``channels`` channels) say where to look."""

    def __init__(self, channels: int, query: int, hidden: int = 48):
        super().__init__()
        self.keys = nn.Conv2d(channels, hidden, 1)
        self.query = nn.Linear(query, hidden)
        self.score = nn.Conv2d(hidden, 1, 1)

    def forward(self, features: torch.Tensor, keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        logits = self.score(torch.tanh(keys + self.query(query)[:, :, None, None]))
        weights = logits.flatten(1).softmax(dim=1).view_as(logits)
        return (features * weights).sum(dim=(2, 3))


class SceneCaptioner(nn.Module):
    """``model(images, tokens)`` → per-position logits (B, CAPTION_LENGTH, V), teacher-forced:
    ``tokens`` (B, CAPTION_LENGTH) are ``<bos> w_1 … w_{T-1}`` (padded), and position ``t``
    predicts ``w_{t+1}``. A GRU reads the words; at each step its state attends over the feature
    map (keys from ``layer3``, values from ``layer4``), and the next word is read from the state and
    the attended features (Show, Attend and Tell, with the image entering at the output only).

    Why this shape, measured on held-out scenes (Grad-CAM's pointing game on each colour and
    shape word's object): when the attended features also feed the GRU, a word's score depends on
    every earlier step's glimpse (other objects), and Grad-CAM, whose channel weights sum the
    gradient over all positions, mixes those glimpses in: 0.69 (LayerCAM 0.98). With the image at
    the output only, a word's gradient at ``layer4`` comes from its own glimpse: 0.84 (LayerCAM
    0.998); trained with label smoothing (see :mod:`~camlens.models.scene_training`), 0.92."""

    def __init__(self, hidden: int = 96, embedding: int = 32):
        super().__init__()
        self.backbone = Backbone()
        channels = self.backbone.channels
        self.embed = nn.Embedding(len(VOCABULARY), embedding)
        self.attention = _Attention(channels // 2, hidden)
        self.gru = nn.GRUCell(embedding, hidden)
        self.out = nn.Linear(hidden + channels, len(VOCABULARY))
        self.hidden = hidden

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        lower, features = self.backbone.both(images)
        keys = self.attention.keys(lower)
        state = features.new_zeros(features.shape[0], self.hidden)
        logits = []
        for step in range(CAPTION_LENGTH):
            state = self.gru(self.embed(tokens[:, step]), state)
            context = self.attention(features, keys, state)
            logits.append(self.out(torch.cat([state, context], dim=1)))
        return torch.stack(logits, dim=1)


class SceneVQA(nn.Module):
    """``model(images, question)`` → answer logits (B, len(ANSWERS)); ``question`` (B,
    QUESTION_LENGTH) token ids padded with ``<pad>``. The question (a bag of its words) steers an
    attention over the feature map; the answer comes from the attended features and the question.
    Where to look is decided from ``layer3`` (the keys), what is read there comes from ``layer4``:
    measured on held-out scenes (with an earlier, end-to-end backbone of 16×16 maps), this makes
    every method's answer maps point at the asked object more often (Grad-CAM 0.86 against 0.57
    with keys from ``layer4``; LayerCAM 0.996 against 0.95)."""

    def __init__(self, embedding: int = 48):
        super().__init__()
        self.backbone = Backbone()
        channels = self.backbone.channels
        self.embed = nn.Embedding(len(VOCABULARY), embedding, padding_idx=VOCABULARY.pad)
        self.encode = nn.Sequential(nn.Linear(embedding, embedding), nn.ReLU())
        self.attention = _Attention(channels // 2, embedding)
        self.answer = nn.Sequential(nn.Linear(channels + embedding, 96), nn.ReLU(), nn.Linear(96, len(ANSWERS)))

    def forward(self, images: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        return self.answer_from(*self.backbone.both(images), question)

    def answer_from(self, lower: torch.Tensor, features: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        """The answer logits given the backbone's ``layer3`` and ``layer4`` outputs and the questions (B, L)."""
        words = (question != VOCABULARY.pad).float()
        query = self.encode((self.embed(question) * words[..., None]).sum(dim=1) / words.sum(dim=1, keepdim=True).clamp_min(1))
        context = self.attention(features, self.attention.keys(lower), query)
        return self.answer(torch.cat([context, query], dim=1))


@torch.fx.wrap
def decode_detections(heatmap: torch.Tensor, sizes: torch.Tensor, threshold: float = 0.3,
                      most: int = 8) -> list[dict[str, torch.Tensor]]:
    """Dense centre heatmaps (B, classes, h, w) in [0, 1] and box sizes (B, 2, h, w) → one
    ``dict(boxes, labels, scores)`` per image: the local maxima (3×3) above ``threshold``, at most
    ``most``, best first; a box is its cell's centre ± half the predicted size (in input pixels).
    The scores are the heatmap's values, so gradients flow back to the detector. The backbone
    reduces the input :data:`STRIDE` ×, and sizes are fractions of the input's side."""
    stride = STRIDE
    side = heatmap.shape[-1] * stride
    peaks = (heatmap == F.max_pool2d(heatmap, 3, 1, 1)) & (heatmap >= threshold)
    results = []
    for image in range(heatmap.shape[0]):
        labels, ys, xs = peaks[image].nonzero(as_tuple=True)
        scores = heatmap[image, labels, ys, xs]
        order = scores.detach().argsort(descending=True)[:most]
        labels, ys, xs, scores = labels[order], ys[order], xs[order], scores[order]
        half = sizes[image, :, ys, xs].detach().t() * side / 2
        centres = torch.stack([(xs + 0.5) * stride, (ys + 0.5) * stride], dim=1).to(heatmap.dtype)
        results.append({"boxes": torch.cat([centres - half, centres + half], dim=1), "labels": labels, "scores": scores})
    return results


class SceneDetector(nn.Module):
    """``model(images)`` → torchvision-style detections (see :func:`decode_detections`) of the
    shapes of :data:`~camlens.data.scenes.SHAPES` (the labels are their indices)."""

    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        # one linear map per position: each class's heatmap logit is a weighted sum of the maps
        self.head = nn.Conv2d(self.backbone.channels, len(SHAPES) + 2, 1)
        with torch.no_grad():
            self.head.bias[: len(SHAPES)].fill_(-2.2)  # start with few false peaks (CenterNet's prior)

    def dense(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap logits (B, classes, h, w) and sizes (B, 2, h, w) as fractions of the image."""
        out = self.head(self.backbone(images))
        return out[:, : len(SHAPES)], out[:, len(SHAPES):]

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        logits, sizes = self.dense(images)
        return decode_detections(logits.sigmoid(), sizes)


def caption_tokens(captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The captioner's input ``<bos> w_1 … w_{T-1}`` and its targets ``w_1 … w_T <eos>``, each
    (B, CAPTION_LENGTH), padded with ``<pad>``."""
    inputs = torch.full((len(captions), CAPTION_LENGTH), VOCABULARY.pad, dtype=torch.long)
    targets = inputs.clone()
    for row, caption in enumerate(captions):
        words = VOCABULARY.encode(caption)[: CAPTION_LENGTH - 1] + [VOCABULARY.eos]
        inputs[row, : len(words)] = torch.tensor([VOCABULARY.bos, *words[:-1]])
        targets[row, : len(words)] = torch.tensor(words)
    return inputs, targets


def caption_prompt(caption: str, batch: int = 1) -> tuple[tuple[torch.Tensor], CaptionTarget]:
    """What explaining ``caption`` takes, for ``batch`` images: the captioner's token input
    (``<bos>`` and the caption) and a :class:`~camlens.targets.CaptionTarget` with one row per
    word of the caption (not ``<eos>``): a map per word. An empty caption is scored whole (the
    probability that the caption ends at once)."""
    words = len(VOCABULARY.encode(caption))
    if words > CAPTION_LENGTH - 1:
        raise ValueError(f"the caption has {words} words; the captioner reads at most {CAPTION_LENGTH - 1}")
    inputs, targets = caption_tokens([caption] * batch)
    return (inputs,), CaptionTarget(targets, words=range(words) if words else None, pad=VOCABULARY.pad)


def question_tokens(questions: list[str]) -> torch.Tensor:
    """Questions as the question-answering model's input (B, QUESTION_LENGTH), padded."""
    tokens = torch.full((len(questions), QUESTION_LENGTH), VOCABULARY.pad, dtype=torch.long)
    for row, question in enumerate(questions):
        words = VOCABULARY.encode(question)
        if len(words) > QUESTION_LENGTH:
            raise ValueError(f"the question {question!r} has {len(words)} words; the model reads at most {QUESTION_LENGTH}")
        tokens[row, : len(words)] = torch.tensor(words)
    return tokens


SCENE_TASKS: dict[str, type[nn.Module]] = {
    "classifier": SceneClassifier, "captioner": SceneCaptioner, "vqa": SceneVQA, "detector": SceneDetector,
    "vit": SceneViT,
}


def load_scene_weights(task: str, path: str | Path) -> nn.Module:
    """A scene model for ``task`` with the weights saved at ``path``."""
    if task not in SCENE_TASKS:
        raise ValueError(f"unknown scene task {task!r}; choose from {', '.join(SCENE_TASKS)}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"scene model weights not found at {path}")
    model = SCENE_TASKS[task]()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
