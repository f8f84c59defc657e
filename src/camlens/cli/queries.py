"""What ``camlens explain`` explains, from its options: classes (``--target``), a caption's words
(``--caption``), the answer to a question (``--question``), a detector's boxes or a score map's
region (``--box``), or why a photo matches a reference photo (``--reference``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..data import ImageReadError, boxes_in_input, read_image, resolve_class
from ..models import DENSE_TASKS, LoadedModel
from ..targets import BoxRegion, BoxTarget, SimilarityTarget, Target
from .common import UsageError

__all__ = ["Query", "BoxOutsideCrop", "build_query"]


class BoxOutsideCrop(ValueError):
    """A ``--box`` outside the part of a photo the model sees: that photo fails, the others go on."""


@dataclass(frozen=True)
class Query:
    """The module to explain, its layer (``--layer``, or the model's recommended one), and
    ``build``: for a chunk of images (B, C, H, W) and the sizes (width, height) of their photo
    files, the model's inputs and the target."""

    model: nn.Module
    layer: str
    build: Callable[[torch.Tensor, Sequence[tuple[int, int]]], tuple[object, Target]]
    description: dict


def _parse_box(text: str, class_names: tuple[str, ...]) -> tuple[tuple[float, ...], int]:
    coordinates, _, label = text.partition(":")
    try:
        box = tuple(float(v) for v in coordinates.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or not label:
        raise UsageError(f"--box {text!r}: give X0,Y0,X1,Y1:LABEL in the photo's pixels, e.g. 10,12,40,44:circle")
    if box[2] < box[0] or box[3] < box[1]:
        raise UsageError(f"--box {text!r} has x1 < x0 or y1 < y0")
    try:
        return box, resolve_class(label, class_names)
    except ValueError as error:
        raise UsageError(f"--box {text!r}: {error}") from None


def _needs(loaded: LoadedModel, option: str, ok: bool, model: str) -> None:
    if not ok:
        raise UsageError(f"{option} needs a {model}; {loaded.name} is a {loaded.task} model")


def _layer(args: argparse.Namespace, recommended: str) -> str:
    """``--layer``, or the model's recommended layer for ``auto``."""
    return recommended if args.layer == "auto" else args.layer


def _check_text(loaded: LoadedModel, option: str, reader: Callable | None, text: str, model: str) -> None:
    """The model reads text, and this text: usage errors before any image is read."""
    _needs(loaded, option, reader is not None, model)
    try:
        reader(text, 1)
    except ValueError as error:
        raise UsageError(f"{option}: {error}") from None


def build_query(args: argparse.Namespace, loaded: LoadedModel, device: torch.device) -> Query:
    """The query the options ask for, checked against what the model can do (usage errors say why)."""
    chosen = [name for name in ("caption", "question", "box", "reference") if getattr(args, name) is not None]
    whats = [name for name in chosen if name != "question"]  # --question may name its answers with --target
    if len(chosen) > 1 or (whats and args.target):
        given = [f"--{name}" for name in chosen] + (["--target"] if args.target else [])
        raise UsageError(f"{' and '.join(given)} cannot be combined: each says what to explain")
    if not chosen and (loaded.question is not None or loaded.caption is not None):
        option = "--question" if loaded.question is not None else "--caption"
        raise UsageError(f"{loaded.name} reads text as well as the image: give {option} TEXT")
    to_device = lambda tensors: tuple(t.to(device) for t in tensors)  # noqa: E731

    if args.caption is not None:
        _check_text(loaded, "--caption", loaded.caption, args.caption, "captioning model (e.g. --model scenes-captioner)")

        def caption(images: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> tuple[object, Target]:
            extra, target = loaded.caption(args.caption, images.shape[0])
            return (images, *to_device(extra)), target

        return Query(loaded.model, _layer(args, loaded.layer), caption, {"caption": args.caption})

    try:
        target = loaded.class_target(args.target or ["top1"])
    except ValueError as error:
        raise UsageError(f"--target: {error}") from None
    if args.question is not None:
        _check_text(loaded, "--question", loaded.question, args.question,
                    "question-answering model (e.g. --model scenes-vqa)")
        return Query(loaded.model, _layer(args, loaded.layer),
                     lambda images, _: ((images, *to_device(loaded.question(args.question, images.shape[0]))), target),
                     {"question": args.question, "target": args.target or ["top1"]})

    if args.box:
        dense = loaded.task in DENSE_TASKS
        _needs(loaded, "--box", loaded.task == "detection" or dense,
               "detector or a model of score maps (e.g. --model scenes-detector)")
        parsed = [_parse_box(text, loaded.class_names) for text in args.box]
        if dense and len({label for _, label in parsed}) > 1:
            raise UsageError(f"{loaded.name}'s --box regions must name one map ({', '.join(loaded.class_names)})")

        def boxes(images: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> tuple[object, Target]:
            per_image = []
            for size in sizes:
                inside = boxes_in_input([box for box, _ in parsed], size, loaded.preprocessing)
                if len(inside) != len(parsed):
                    raise BoxOutsideCrop(f"a --box lies outside the part of this {size[0]}×{size[1]} photo the "
                                         "model sees")
                per_image.append(inside)
            if dense:  # the score map's channel LABEL summed inside each box
                return images, BoxRegion(per_image, tuple(images.shape[-2:]), channel=parsed[0][1])
            return images, BoxTarget(per_image, [[label for _, label in parsed]] * len(sizes))

        return Query(loaded.model, _layer(args, loaded.layer), boxes, {"boxes": list(args.box)})

    if args.reference is not None:
        _needs(loaded, "--reference", loaded.embedding is not None, "model with an embedding")
        try:
            photo = read_image(args.reference)
        except ImageReadError as error:
            raise UsageError(f"--reference: {error}") from None
        embedding = loaded.embedding.to(device)
        with torch.no_grad():
            reference = embedding(loaded.preprocessing(photo)[None].to(device))[0]
        # the embedding wraps the model: its layers are the model's under "model."
        layer = _layer(args, loaded.layer)
        layer = layer if layer == "auto" or layer.startswith("model.") else f"model.{layer}"
        return Query(embedding, layer, lambda images, _: (images, SimilarityTarget(reference)),
                     {"reference": str(args.reference)})

    return Query(loaded.model, _layer(args, loaded.layer), lambda images, _: (images, target),
                 {"target": args.target or ["top1"]})
