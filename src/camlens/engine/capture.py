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
from dataclasses import dataclass
from types import TracebackType

import torch
from torch import nn

from .inputs import ModelInputs, as_inputs
from .layers import LayerError

__all__ = ["LayerRecorder", "Forward", "record_forward"]


class LayerRecorder:
    """Context manager: forward hooks that record the outputs of ``layers`` (name → module), one
    tensor per call, and start autograd at the first of them. The hooks are removed on exit, also
    after an exception, which is never swallowed."""

    def __init__(self, layers: Mapping[str, nn.Module]):
        self.layers = dict(layers)
        self.calls: dict[str, list[torch.Tensor]] = {name: [] for name in self.layers}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: object) -> torch.Tensor:
            if not isinstance(output, torch.Tensor):
                raise TypeError(
                    f"layer {name!r} ({type(module).__name__}) returned {type(output).__name__}; "
                    "CAM methods need a layer whose output is a (B, C, h, w) tensor"
                )
            if output.dim() != 4:
                raise LayerError(f"layer {name!r} ({type(module).__name__}) has output shape {tuple(output.shape)}, "
                                 "not a spatial (B, C, h, w) map; choose a convolutional layer (or layer='auto').")
            if output.shape[-1] * output.shape[-2] == 1:
                raise LayerError(f"layer {name!r} ({type(module).__name__}) outputs 1×1 maps {tuple(output.shape)} "
                                 "(after global pooling?): there is nothing to localize; choose a layer before the "
                                 "pooling (or layer='auto').")
            if not output.requires_grad:
                # First recorded layer: start the graph here, so autograd records only what follows.
                output = output.detach().requires_grad_(True)
                torch.set_grad_enabled(True)
            self.calls[name].append(output)
            return output.clone()

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
) -> Forward:
    """Run the model on ``inputs`` (an image batch, or :class:`~camlens.engine.inputs.ModelInputs`)
    recording ``layers``.

    With ``input_gradients=False`` autograd starts at the first recorded layer (see the module
    docstring); with ``True`` the image is a leaf and the whole pass is recorded (needed by
    Guided Backpropagation). Works inside a caller's ``torch.no_grad()`` or ``inference_mode()``.
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
        with LayerRecorder(layers) as recorder, grad_mode:
            output = inputs(model)
    return Forward(output=output, inputs=image, calls=recorder.calls)
