"""The error of a layer that is not there or cannot be explained, shared by the engine's modules."""

from __future__ import annotations

__all__ = ["LayerError", "PYTHON_HINT"]

PYTHON_HINT = "camlens.layer_output_shapes(model, images) lists every layer with its output shape."


class LayerError(ValueError):
    """A layer that is not there or cannot be explained. ``reason`` is the message without the
    closing hint on how to list the layers, so that a command can give its own (``camlens
    layers MODEL``)."""

    def __init__(self, reason: str, hint: str = PYTHON_HINT):
        super().__init__(f"{reason} {hint}".strip())
        self.reason = reason
