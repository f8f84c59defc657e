"""Finding the layer to explain: by dotted name, by module object, or automatically on the input."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .inputs import as_inputs

__all__ = ["LayerSpec", "LayerError", "resolve_layer", "layer_output_shapes", "auto_layer", "spatial_layers"]

LayerSpec = str | nn.Module

PYTHON_HINT = "camlens.layer_output_shapes(model, images) lists every layer with its output shape."


class LayerError(ValueError):
    """A layer that is not there or cannot be explained. ``reason`` is the message without the
    closing hint on how to list the layers, so that a command can give its own (``camlens
    layers MODEL``)."""

    def __init__(self, reason: str, hint: str = PYTHON_HINT):
        super().__init__(f"{reason} {hint}".strip())
        self.reason = reason


def resolve_layer(model: nn.Module, layer: LayerSpec) -> tuple[str, nn.Module]:
    """Return ``(dotted name, module)`` for a layer given by dotted name or module object.

    Raises ``ValueError`` naming close matches and the candidates when the name is unknown.
    """
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, module
        raise ValueError(f"the {type(layer).__name__} module given as layer is not part of the model")
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a dotted module name or an nn.Module, not {type(layer).__name__}")
    modules = dict(model.named_modules())
    if layer and layer in modules:
        return layer, modules[layer]
    names = [name for name in modules if name]
    close = difflib.get_close_matches(layer, names, n=5, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    top = [name for name in names if "." not in name]
    raise LayerError(f"layer {layer!r} not found in {type(model).__name__}.{hint} Top-level layers: {', '.join(top)}.")


@dataclass(frozen=True)
class _Produced:
    name: str
    output: object


def _probe(model: nn.Module, run: Callable[[], object]) -> list[_Produced]:
    """Every named module's output in the order the outputs were produced (last call wins)."""
    produced: dict[str, _Produced] = {}

    def record(name: str):
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            produced.pop(name, None)  # re-insert: the order follows a reused module's last call
            produced[name] = _Produced(name, output)

        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in model.named_modules() if name]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return list(produced.values())


def layer_output_shapes(model: nn.Module, inputs: object) -> dict[str, tuple[int, ...] | None]:
    """Run one forward pass on ``inputs`` (an image batch, or a model's several inputs as
    :func:`camlens.explain` takes them) without autograd and return each named module's output
    shape, in the order the outputs were produced; ``None`` where the output is not a tensor."""
    inputs = as_inputs(inputs)
    return {
        p.name: tuple(p.output.shape) if isinstance(p.output, torch.Tensor) else None
        for p in _probe(model, lambda: inputs(model))
    }


def spatial_layers(model: nn.Module, inputs: object, last: int = 5) -> list[tuple[str, tuple[int, ...]]]:
    """The ``last`` layers, last first, whose output on ``inputs`` is a (B, C, h, w) map with
    h·w > 1: the candidates to name when a layer cannot be explained (one forward pass)."""
    shapes = layer_output_shapes(model, inputs)
    spatial = [(name, shape) for name, shape in shapes.items() if shape and len(shape) == 4 and shape[-1] * shape[-2] > 1]
    return spatial[::-1][:last]


def auto_layer(model: nn.Module, inputs: object) -> str:
    """The layer ``"auto"`` means: the last module, in the order outputs are produced on these
    images, whose output is a ``(B, C, h, w)`` tensor with ``h·w > 1``. When several nested modules
    return that same tensor (``layer4``, ``layer4.2``, ``layer4.2.relu``) the outermost is named.

    Only the first image is run, so the cost is one forward pass at batch size 1.
    """
    inputs = as_inputs(inputs)
    first = inputs.rows(torch.zeros(1, dtype=torch.long, device=inputs.image.device))
    produced = _probe(model, lambda: first(model))
    spatial = [
        p for p in produced
        if isinstance(p.output, torch.Tensor) and p.output.dim() == 4 and p.output.shape[-1] * p.output.shape[-2] > 1
    ]
    if not spatial:
        raise ValueError(
            f"no layer of {type(model).__name__} produces a spatial (B, C, h, w) output on images of shape "
            f"{tuple(inputs.image.shape)}; CAM methods need a convolutional layer"
        )
    last = spatial[-1].output
    same = [p.name for p in spatial if p.output is last]
    return min(same, key=lambda name: (name.count("."), len(name)))
