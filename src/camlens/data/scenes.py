"""A world with ground truth: seeded scenes of coloured shapes on textured backgrounds.

Real photos cannot say where the evidence for a caption's word or a question's answer lies; these
scenes can. Each has 1–4 objects, every one of a different shape (circle, square, triangle, star)
and a different colour (red, green, blue, yellow), so that a shape word or a colour word names
exactly one object. Objects do not overlap; each comes with its pixel mask and its box. A scene
also gives its multi-label classes (which shapes and colours are present), a caption that lists
the objects in a fixed order of their shapes ("a red circle and a blue square"; the order does not
depend on where they lie, so a captioner that reads the image as a whole, as the Grad-CAM paper's
does, can learn it), and questions with their answers ("what colour is the circle ?" → "red"),
each about one object.

Everything is a function of the seed: ``scenes(200, seed=1)`` is the same list on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

__all__ = [
    "SHAPES", "COLOURS", "LABELS", "ANSWERS", "Vocabulary", "VOCABULARY", "SceneObject", "Question", "Scene",
    "make_scene", "scenes", "scene_tensors", "write_dataset", "write_pairs", "scene_concepts", "MARKER_RGB", "framed", "frame_mask", "with_frames",
]

SHAPES = ("circle", "square", "triangle", "star")
COLOURS = ("red", "green", "blue", "yellow")
_RGB = {"red": (215, 38, 38), "green": (36, 168, 62), "blue": (38, 82, 222), "yellow": (236, 204, 28)}
LABELS = SHAPES + COLOURS    # the multi-label classes: label k is present when some object has it
ANSWERS = COLOURS + SHAPES   # the answers of the question-answering task, one class each
_DRAW_SCALE = 4              # shapes are drawn at 4× and reduced: smooth edges, exact masks


class Vocabulary:
    """Words ↔ token ids for captions and questions. ``<pad>`` is 0, ``<bos>`` 1, ``<eos>`` 2."""

    def __init__(self, words: tuple[str, ...]):
        self.words = ("<pad>", "<bos>", "<eos>", *words)
        self.index = {word: i for i, word in enumerate(self.words)}

    pad, bos, eos = 0, 1, 2

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        """Token ids of the words of ``text`` (lower case; ``?`` is a word); unknown words are an error."""
        words = text.lower().replace("?", " ? ").split()
        unknown = [w for w in words if w not in self.index]
        if unknown:
            raise ValueError(f"unknown word(s) {', '.join(map(repr, unknown))}; the vocabulary is "
                             f"{', '.join(self.words[3:])}")
        return [self.index[w] for w in words]

    def decode(self, tokens: list[int]) -> str:
        return " ".join(self.words[t] for t in tokens if t not in (self.pad, self.bos, self.eos))


VOCABULARY = Vocabulary(("a", "and", "what", "colour", "shape", "is", "the", "object", "?", *COLOURS, *SHAPES))


@dataclass(frozen=True, eq=False)
class SceneObject:
    shape: str
    colour: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, inclusive-exclusive
    mask: np.ndarray  # (H, W) bool: the pixels the object covers

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2


@dataclass(frozen=True)
class Question:
    text: str
    answer: str
    about: int  # the index of the object the question asks about

    @property
    def answer_index(self) -> int:
        return ANSWERS.index(self.answer)


@dataclass(frozen=True, eq=False)
class Scene:
    image: np.ndarray                 # (H, W, 3) uint8
    objects: tuple[SceneObject, ...]  # from left to right

    @property
    def size(self) -> int:
        return self.image.shape[0]

    @cached_property
    def labels(self) -> torch.Tensor:
        """Multi-hot (len(LABELS),): the shapes and colours present."""
        present = {o.shape for o in self.objects} | {o.colour for o in self.objects}
        return torch.tensor([label in present for label in LABELS], dtype=torch.float32)

    def object_with(self, label: str) -> int:
        """The index of the object of shape or colour ``label``."""
        return next(i for i, o in enumerate(self.objects) if label in (o.shape, o.colour))

    @property
    def described(self) -> list[int]:
        """The objects in the caption's order: by shape, circle, square, triangle, star."""
        return sorted(range(len(self.objects)), key=lambda i: SHAPES.index(self.objects[i].shape))

    @property
    def caption(self) -> str:
        return " and ".join(f"a {self.objects[i].colour} {self.objects[i].shape}" for i in self.described)

    @property
    def caption_objects(self) -> list[int | None]:
        """For each word of the caption, the object it names (its colour or shape), else None."""
        named = []
        for number, index in enumerate(self.described):
            named += ([None] if number else []) + [None, index, index]  # ("and") "a" colour shape
        return named

    @property
    def questions(self) -> list[Question]:
        """Two questions per object: its colour given its shape, its shape given its colour."""
        asked = []
        for index, o in enumerate(self.objects):
            asked.append(Question(f"what colour is the {o.shape} ?", o.colour, index))
            asked.append(Question(f"what shape is the {o.colour} object ?", o.shape, index))
        return asked

    def pil(self) -> Image.Image:
        return Image.fromarray(self.image)


def _draw(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, radius: float, turn: float) -> None:
    """Fill one shape of about ``radius`` around (cx, cy), turned by ``turn`` radians (not circles)."""
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=255)
        return
    # corners on a circle: a square's at 45° (its half side 0.85 r), a triangle's, a star's five
    # points alternating with inner corners at 0.45 of the radius
    corners, inner, scale, offset = {"square": (4, None, 0.85 * math.sqrt(2), math.pi / 4),
                                     "triangle": (3, None, 1.0, 0.0), "star": (5, 0.45, 1.05, 0.0)}[shape]
    steps = corners * (2 if inner else 1)
    points = []
    for k in range(steps):
        angle = turn + offset + 2 * math.pi * k / steps - math.pi / 2
        r = radius * scale * (inner if inner and k % 2 else 1.0)
        points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    draw.polygon(points, fill=255)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A muted texture: smooth blotches, fine grain and faint stripes, in greys and browns."""
    coarse = rng.uniform(-1, 1, (4, 4, 3))
    smooth = np.asarray(Image.fromarray(((coarse + 1) * 127.5).astype(np.uint8)).resize((size, size), Image.BICUBIC),
                        dtype=np.float64) / 127.5 - 1
    base = rng.uniform(95, 165) + rng.uniform(-12, 12, 3)
    ys, xs = np.mgrid[0:size, 0:size]
    angle, period = rng.uniform(0, math.pi), rng.uniform(4, 12)
    stripes = np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period)[..., None]
    grain = rng.normal(0, 7, (size, size, 1))
    tint = smooth.mean(axis=2, keepdims=True) * 22 + smooth * 6
    return np.clip(base + tint + stripes * rng.uniform(3, 10) + grain, 0, 255)


def make_scene(rng: np.random.Generator, size: int = 64, count: int | None = None) -> Scene:
    """One scene with ``count`` objects (1–4 at random), laid out without overlap."""
    count = count or int(rng.integers(1, 5))
    shapes = rng.permutation(len(SHAPES))[:count]
    colours = rng.permutation(len(COLOURS))[:count]
    image = _background(rng, size)
    placed: list[tuple[float, float, float]] = []
    objects = []
    for shape_index, colour_index in zip(shapes, colours):
        for _ in range(200):  # rejection sampling: a free place for this object
            radius = rng.uniform(size * 0.1, size * 0.19)
            cx, cy = rng.uniform(radius + 1, size - radius - 1, 2)
            if all(math.hypot(cx - x, cy - y) > radius + r + 2 for x, y, r in placed):
                break
        else:
            continue  # the scene is full: fewer objects
        placed.append((cx, cy, radius))
        shape, colour = SHAPES[shape_index], COLOURS[colour_index]
        big = Image.new("L", (size * _DRAW_SCALE,) * 2, 0)
        _draw(ImageDraw.Draw(big), shape, cx * _DRAW_SCALE, cy * _DRAW_SCALE, radius * _DRAW_SCALE,
              rng.uniform(-0.25, 0.25))
        coverage = np.asarray(big.resize((size, size), Image.BOX), dtype=np.float64)[..., None] / 255
        shade = np.array(_RGB[colour], dtype=np.float64) * rng.uniform(0.85, 1.1)
        image = image * (1 - coverage) + np.clip(shade, 0, 255) * coverage
        mask = coverage[..., 0] >= 0.5
        rows, cols = np.nonzero(mask)
        box = (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))
        objects.append(SceneObject(shape, colour, box, mask))
    objects.sort(key=lambda o: o.centre[0])
    return Scene(np.clip(image + 0.5, 0, 255).astype(np.uint8), tuple(objects))


def scenes(count: int, seed: int = 0, size: int = 64, objects: int | None = None) -> list[Scene]:
    """``count`` scenes, the same for the same seed; with ``objects`` objects each (1–4 at random
    by default; a scene too full for them has fewer)."""
    rng = np.random.default_rng(seed)
    return [make_scene(rng, size, objects) for _ in range(count)]


def write_dataset(batch: list[Scene], folder: str | Path) -> Path:
    """The scenes as a boxed dataset that :func:`~camlens.data.load_dataset` reads (and so
    ``camlens evaluate`` and ``camlens robustness``): ``scene-NNNN.png`` and ``annotations.csv``,
    each scene labelled with its first object's shape (an index of :data:`LABELS`) and boxed
    with every object of that shape. Returns the CSV's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["file,class_index,x0,y0,x1,y1"]
    for number, scene in enumerate(batch):
        name = f"scene-{number:04d}.png"
        scene.pil().save(folder / name)
        shape = scene.objects[0].shape
        rows += [f"{name},{LABELS.index(shape)},{','.join(f'{v:g}' for v in o.box)}" for o in scene.objects
                 if o.shape == shape]
    path = folder / "annotations.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


MARKER_RGB = (255, 0, 255)  # the spurious marker's colour: magenta, no object's


def frame_mask(size: int = 64, width: int = 3) -> np.ndarray:
    """The pixels (size, size) of a frame ``width`` pixels wide along the scene's edges."""
    mask = np.zeros((size, size), dtype=bool)
    mask[:width], mask[-width:], mask[:, :width], mask[:, -width:] = True, True, True, True
    return mask


def framed(scene: Scene, width: int = 3) -> Scene:
    """The scene with a magenta frame ``width`` pixels wide painted over its edges: a spurious
    marker, the watermark or border that a biased dataset adds to one class's photos. The objects
    keep their masks and boxes (objects lie at least a pixel from the edge, so the frame may hide
    up to ``width − 1`` pixels of one)."""
    image = scene.image.copy()
    image[frame_mask(scene.size, width)] = MARKER_RGB
    return Scene(image, scene.objects)


def with_frames(batch: list[Scene], label: str, at_random: bool = False, seed: int = 0, width: int = 3) -> list[Scene]:
    """A biased dataset, or its rebalanced twin. Biased (the default): every scene that holds
    ``label`` (a shape or a colour of :data:`LABELS`), and no other, carries the frame of
    :func:`framed` — the frame predicts the label perfectly. ``at_random``: as many scenes carry
    it, chosen at random (from ``seed``) whatever they hold — the same pixels, no information."""
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; choose from {', '.join(LABELS)}")
    holding = [bool(scene.labels[LABELS.index(label)]) for scene in batch]
    if at_random:
        chosen = set(np.random.default_rng(seed).permutation(len(batch))[: sum(holding)].tolist())
        holding = [i in chosen for i in range(len(batch))]
    return [framed(scene, width) if mark else scene for scene, mark in zip(batch, holding)]


def write_pairs(batch: list[Scene], folder: str | Path) -> Path:
    """Scenes of two or more objects as a two-class dataset for the class-discriminativeness
    measure (:mod:`camlens.evaluate.discrimination`): ``scene-NNNN.png`` and ``pairs.csv``
    (``file,class_a,class_b``: the shapes of the first two objects). Returns the CSV's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["file,class_a,class_b"]
    for number, scene in enumerate(batch):
        if len(scene.objects) < 2:
            continue
        name = f"scene-{number:04d}.png"
        scene.pil().save(folder / name)
        rows.append(f"{name},{scene.objects[0].shape},{scene.objects[1].shape}")
    path = folder / "pairs.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def scene_concepts(batch: list[Scene]) -> dict[str, torch.Tensor]:
    """Concept masks (N, H, W) of the scenes, for naming channels (:mod:`camlens.evaluate.concepts`):
    each shape and each colour of :data:`LABELS` (the pixels of the object that has it) and
    ``background`` (the pixels of no object)."""
    masks = {label: np.zeros((len(batch), batch[0].size, batch[0].size), dtype=bool) for label in LABELS}
    for row, scene in enumerate(batch):
        for o in scene.objects:
            masks[o.shape][row] |= o.mask
            masks[o.colour][row] |= o.mask
    concepts = {label: torch.from_numpy(mask) for label, mask in masks.items()}
    concepts["background"] = ~torch.stack([concepts[shape] for shape in SHAPES]).any(dim=0)
    return concepts


def scene_tensors(batch: list[Scene]) -> torch.Tensor:
    """Scenes as the scene models' input (B, 3, H, W): pixels scaled to [−1, 1]."""
    pixels = torch.from_numpy(np.stack([s.image for s in batch])).permute(0, 3, 1, 2).float()
    return pixels / 127.5 - 1
