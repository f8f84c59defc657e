"""The ``target`` argument of :func:`camlens.explain`, whatever its form, as a :class:`Target`."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch

from .base import Target
from .callables import CallableTarget
from .classification import ClassTarget, TopK

__all__ = ["as_target", "top_k"]


def top_k(text: str) -> TopK | None:
    """``"topK"`` in any case (``"top5"``, ``"TOP1"``) → :class:`TopK` of K (K ≥ 1, else an
    error); any other text → ``None``. The one parser of this spelling, for Python and the CLI."""
    if not (text[:3].lower() == "top" and text[3:].isdigit()):
        return None
    return TopK(int(text[3:]))


def as_target(target: object) -> Target:
    """Normalize the ``target`` argument of :func:`camlens.explain`.

    ``None`` → the top-1 predicted class; ``"topK"`` (e.g. ``"top5"``) → :class:`TopK`; an int → that
    class for every image; a sequence or 1-D tensor of ints → one class per image (its length must be
    the batch size); a :class:`Target` → itself; any other callable → :class:`CallableTarget`.
    """
    if target is None:
        return TopK(1)
    if isinstance(target, Target):
        return target
    if isinstance(target, str):
        if (top := top_k(target)) is not None:
            return top
        raise ValueError(f"unknown target {target!r}; use a class index, 'top1', 'top5', ... or a Target")
    if isinstance(target, bool):
        raise TypeError("target must be a class index, not a bool")
    if isinstance(target, (numbers.Integral, Sequence, torch.Tensor)) or hasattr(target, "__array__"):
        return ClassTarget(target)
    if callable(target):
        return CallableTarget(target)
    raise TypeError(f"cannot use a {type(target).__name__} as a target")
