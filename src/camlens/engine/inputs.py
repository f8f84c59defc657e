"""What a model is called with: one image batch, or the image beside other tensors (a question's
tokens, a caption prefix), positional or by keyword.

Exactly one input is *the image*: the one that Guided Backpropagation differentiates, maps are
upsampled to, and Score-CAM masks. Every other tensor is batched along with it: it must have the
image's batch size in its first dimension, and when camlens evaluates rows of chosen images it
takes the same rows of every such tensor. Inputs that are not tensors (flags, ``None``, numbers)
are passed through unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .outputs import describe

__all__ = ["Inputs", "ModelInputs", "as_inputs"]

ImageKey = int | str


class Inputs:
    """The arguments of one model call, for :func:`camlens.explain`: ``Inputs(images, tokens)``
    calls ``model(images, tokens)``; ``Inputs(images, question=tokens)`` calls
    ``model(images, question=tokens)``. A bare tensor, a tuple (positional) or a dict (keywords)
    can be passed instead when there is nothing to mix."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        parts = [describe(a) for a in self.args] + [f"{k}={describe(v)}" for k, v in self.kwargs.items()]
        return f"Inputs({', '.join(parts)})"


@dataclass(frozen=True)
class ModelInputs:
    """Positional and keyword arguments of a model call, one of which is the image batch
    (``image``: its position in ``args`` or its name in ``kwargs``)."""

    args: tuple
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    image_key: ImageKey = 0

    @property
    def image(self) -> torch.Tensor:
        return self.args[self.image_key] if isinstance(self.image_key, int) else self.kwargs[self.image_key]

    @property
    def batch(self) -> int:
        return int(self.image.shape[0])

    @property
    def is_single(self) -> bool:
        """Whether the model takes the image alone."""
        return len(self.args) == 1 and not self.kwargs

    def map(self, fn: Callable[[object, bool], object]) -> ModelInputs:
        """Apply ``fn(value, is_image)`` to every argument."""
        args = tuple(fn(value, self.image_key == i) for i, value in enumerate(self.args))
        kwargs = {name: fn(value, self.image_key == name) for name, value in self.kwargs.items()}
        return ModelInputs(args, kwargs, self.image_key)

    def with_image(self, image: torch.Tensor) -> ModelInputs:
        """The same call with another image batch (of the same batch size as the other inputs)."""
        return self.map(lambda value, is_image: image if is_image else value)

    def rows(self, index: torch.Tensor, image: torch.Tensor | None = None) -> ModelInputs:
        """The call for images ``index`` (M,): row m of every batched tensor is row ``index[m]``.
        ``image`` (M, C, H, W), when given, replaces the selected image rows (masked or
        perturbed images of those rows)."""

        def take(value: object, is_image: bool) -> object:
            if is_image and image is not None:
                return image
            return value[index] if isinstance(value, torch.Tensor) else value

        return self.map(take)

    def detached(self) -> ModelInputs:
        return self.map(lambda value, _: value.detach() if isinstance(value, torch.Tensor) else value)

    def to(self, device: torch.device | str | None) -> ModelInputs:
        """Every tensor argument on ``device`` (``None``: where it is)."""
        return self.map(lambda value, _: value.to(device) if isinstance(value, torch.Tensor) else value)

    def __call__(self, model: Callable[..., object]) -> object:
        return model(*self.args, **self.kwargs)

    def positional(self, model: nn.Module) -> list[object]:
        """The arguments in the order of ``model.forward``'s parameters, defaults filled in (how a
        traced graph's placeholders receive them)."""
        if self.is_single:
            return list(self.args)
        bound = inspect.signature(model.forward).bind(*self.args, **self.kwargs)
        bound.apply_defaults()
        return list(bound.arguments.values())


def as_inputs(inputs: object, image: ImageKey | None = None) -> ModelInputs:
    """Normalize the ``inputs`` argument of :func:`camlens.explain` and check it.

    ``inputs`` is a tensor (the image batch), a tuple or list (positional arguments), a dict
    (keyword arguments), or :class:`Inputs` (both). ``image`` names the image among them (a
    position or a keyword); by default it is the only 4-D floating-point tensor. Every tensor must
    have the image's batch size in its first dimension. A model's only input is its image.
    """
    if isinstance(inputs, ModelInputs):
        return inputs
    if isinstance(inputs, torch.Tensor):
        args, kwargs = (inputs,), {}
    elif isinstance(inputs, Inputs):
        args, kwargs = tuple(inputs.args), dict(inputs.kwargs)
    elif isinstance(inputs, Mapping):
        args, kwargs = (), dict(inputs)
    elif isinstance(inputs, Sequence) and not isinstance(inputs, str):
        args, kwargs = tuple(inputs), {}
    else:
        raise TypeError(
            f"inputs must be a tensor (B, C, H, W), a tuple or dict of the model's arguments, or camlens.Inputs; "
            f"not {type(inputs).__name__}"
        )
    if not args and not kwargs:
        raise ValueError("inputs is empty: give at least the image batch")
    keys: list[ImageKey] = [*range(len(args)), *kwargs]
    value = lambda key: args[key] if isinstance(key, int) else kwargs[key]  # noqa: E731
    if image is None and len(keys) == 1:
        image = keys[0]  # the model's only input; explain() says what is wrong with it, if anything
    elif image is None:
        candidates = [k for k in keys if isinstance(value(k), torch.Tensor) and value(k).dim() == 4
                      and value(k).is_floating_point()]
        if len(candidates) != 1:
            found = "none" if not candidates else ", ".join(map(repr, candidates))
            raise ValueError(
                f"cannot tell which input is the image: the 4-D floating-point inputs are {found}; "
                "pass image=<position or keyword>"
            )
        image = candidates[0]
    elif image not in keys:
        raise ValueError(f"image={image!r} names no input; the inputs are {', '.join(map(repr, keys))}")
    if not isinstance(value(image), torch.Tensor):
        raise TypeError(f"the image must be a torch.Tensor (B, C, H, W); input {image!r} is a {type(value(image)).__name__}")
    batch = value(image).shape[0] if value(image).dim() > 0 else None
    for key in keys:
        tensor = value(key)
        if key != image and isinstance(tensor, torch.Tensor) and (tensor.dim() == 0 or tensor.shape[0] != batch):
            raise ValueError(
                f"input {key!r} has shape {tuple(tensor.shape)}, but the image batch has {batch} images: every "
                "tensor input must have the image's batch size in its first dimension"
            )
    return ModelInputs(args, kwargs, image)
