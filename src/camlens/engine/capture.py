"""Recording a layer's activations during one forward pass, ready for gradients.

The forward runs without autograd up to the first recorded layer. There the layer's output is
detached into a leaf that requires grad, and autograd is switched on for the rest of the pass: the
graph covers only the part of the network *after* the layer, which is all that
``torch.autograd.grad(score, activations)`` needs. Nothing before the layer is stored for
backward, no parameter ``.grad`` is ever touched, and the graph dies with the returned tensors.

Every hooked call hands the model a *clone* of its output, so in-place operations after the layer
(``ReLU(inplace=True)``) cannot change the recorded activations or invalidate the leaf.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

import torch
from torch import nn

from .errors import LayerError
from .inputs import ModelInputs, as_inputs
from .tokens import LayoutFinder, TokenLayout

__all__ = ["LayerRecorder", "LayerFormat", "LayoutFinder", "Forward", "record_forward", "output_tensor"]


@dataclass(frozen=True)
class LayerFormat:
    """What turns maps (M, C, h, w) back into what the layer returned: its token layout, the
    recorded prefix tokens (B, P, C), and the other elements of a tuple output (a Hugging Face
    layer's ``(hidden_states, attentions)``), per image of the batch."""

    layout: TokenLayout | None = None
    prefix: torch.Tensor | None = None
    rest: tuple | None = None
    batch: int = 0  # the recorded batch: tensors in ``rest`` with this first dimension are per image
    kind: type = tuple

    @property
    def changes_output(self) -> bool:
        """Whether the layer's output is something other than the maps themselves."""
        return self.layout is not None or self.rest is not None

    def restore(self, maps: torch.Tensor, image_index: torch.Tensor) -> object:
        """The layer's output for maps of rows of images ``image_index``."""
        prefix = self.prefix[image_index] if self.prefix is not None else None
        tensor = self.layout.join(maps, prefix) if self.layout is not None else maps
        if self.rest is None:
            return tensor
        per_image = lambda v: isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == self.batch  # noqa: E731
        return _rebuild(self.kind, tensor, [v[image_index] if per_image(v) else v for v in self.rest])


def _rebuild(kind: type, first: torch.Tensor, rest: list | tuple) -> object:
    """A tuple, list or named tuple of the layer's output kind, with ``first`` first."""
    return kind(first, *rest) if hasattr(kind, "_fields") else kind((first, *rest))


def output_tensor(output: object) -> tuple[torch.Tensor | None, tuple | None]:
    """A layer's output tensor, and the rest of a tuple or list output whose first element it is."""
    if isinstance(output, torch.Tensor):
        return output, None
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0], tuple(output[1:])
    return None, None


class LayerRecorder:
    """Context manager: forward hooks that record the outputs of ``layers`` (name → module), one
    (B, C, h, w) map tensor per call, and start autograd at the first of them. The hooks are
    removed on exit, also after an exception, which is never swallowed.

    A token layer's output (B, N, C) or channels-last maps (B, h, w, C) are recorded as maps
    through the layout ``find_layout(name, output)`` gives on the layer's first call (see
    :mod:`camlens.engine.tokens`); the model goes on with the maps joined back, so that gradients
    with respect to the maps are the gradients of its output. ``formats[name]`` keeps, per call,
    what turns maps back into the layer's output."""

    def __init__(self, layers: Mapping[str, nn.Module], find_layout: LayoutFinder | None = None):
        self.layers = dict(layers)
        self.calls: dict[str, list[torch.Tensor]] = {name: [] for name in self.layers}
        self.formats: dict[str, list[LayerFormat]] = {name: [] for name in self.layers}
        self._find_layout = find_layout
        self._layouts: dict[str, TokenLayout | None] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: object) -> object:
            tensor, rest = output_tensor(output)
            if tensor is None:
                raise TypeError(
                    f"layer {name!r} ({type(module).__name__}) returned {type(output).__name__}; "
                    "CAM methods need a layer whose output is a (B, C, h, w) tensor or a sequence of tokens"
                )
            if name not in self._layouts:
                self._layouts[name] = self._find_layout(name, tensor) if self._find_layout else None
            layout = self._layouts[name]
            if layout is not None:
                layout.check(tensor, name)
                maps, prefix = layout.split(tensor)
            else:
                maps, prefix = tensor, None
            if maps.dim() != 4:
                raise LayerError(f"layer {name!r} ({type(module).__name__}) has output shape {tuple(tensor.shape)}, "
                                 "not a spatial (B, C, h, w) map; choose a convolutional layer (or layer='auto').")
            if maps.shape[-1] * maps.shape[-2] == 1:
                raise LayerError(f"layer {name!r} ({type(module).__name__}) outputs 1×1 maps {tuple(maps.shape)} "
                                 "(after global pooling?): there is nothing to localize; choose a layer before the "
                                 "pooling (or layer='auto').")
            if not maps.requires_grad:
                # First recorded layer: start the graph here, so autograd records only what follows.
                maps = maps.detach().requires_grad_(True)
                torch.set_grad_enabled(True)
            self.calls[name].append(maps)
            kept = prefix.detach() if prefix is not None else None
            self.formats[name].append(LayerFormat(layout, kept, rest, tensor.shape[0], type(output)))
            if layout is None and rest is None:
                return maps.clone()
            # the model goes on from the maps (joined back into a new tensor), so gradients reach them
            joined = layout.join(maps, prefix) if layout is not None else maps.clone()
            return joined if rest is None else _rebuild(type(output), joined, rest)

        return hook

    def __enter__(self) -> LayerRecorder:
        try:
            for name, module in self.layers.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self._remove()
            raise
        return self

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._remove()


@dataclass
class Forward:
    """One recorded forward pass: the model's raw output, the image actually fed (a leaf requiring
    grad when input gradients were asked for) and each layer's output, one tensor per call."""

    output: object
    inputs: torch.Tensor
    calls: dict[str, list[torch.Tensor]]
    formats: dict[str, list[LayerFormat]] = field(default_factory=dict)

    def activations(self, layer: str, call: int = -1) -> torch.Tensor:
        """The output of ``layer`` at call ``call`` (``-1``: the last call in the forward pass)."""
        calls = self.calls[layer]
        if not calls:
            raise ValueError(f"layer {layer!r} was not called during the forward pass; it cannot be explained")
        if not -len(calls) <= call < len(calls):
            raise ValueError(f"layer {layer!r} was called {len(calls)} time(s) in one forward pass; call={call} is out of range")
        return calls[call]


def record_forward(
    model: Callable[..., object],
    inputs: ModelInputs | torch.Tensor,
    layers: Mapping[str, nn.Module],
    *,
    input_gradients: bool = False,
    find_layout: LayoutFinder | None = None,
) -> Forward:
    """Run the model on ``inputs`` (an image batch, or :class:`~camlens.engine.inputs.ModelInputs`)
    recording ``layers``.

    With ``input_gradients=False`` autograd starts at the first recorded layer (see the module
    docstring); with ``True`` the image is a leaf and the whole pass is recorded (needed by
    Guided Backpropagation). Works inside a caller's ``torch.no_grad()`` or ``inference_mode()``.
    ``find_layout(name, output)`` gives a token layer's layout (see :class:`LayerRecorder`).
    """
    inputs = as_inputs(inputs)
    with torch.inference_mode(False):
        # tensors made under inference mode cannot take part in a graph: use ordinary copies
        inputs = inputs.map(lambda v, _: v.clone() if isinstance(v, torch.Tensor) and v.is_inference() else v)
        image = inputs.image
        if input_gradients:
            image = image.detach().requires_grad_(True)
            inputs = inputs.with_image(image)
        grad_mode = torch.enable_grad() if input_gradients else torch.no_grad()
        with LayerRecorder(layers, find_layout) as recorder, grad_mode:
            output = inputs(model)
    return Forward(output=output, inputs=image, calls=recorder.calls, formats=recorder.formats)
