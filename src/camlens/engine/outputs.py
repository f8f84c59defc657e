"""Reading the prediction tensor out of whatever the model returns."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

__all__ = ["OutputSelector", "select_output"]

OutputSelector = int | str | Callable[[object], torch.Tensor] | None

_CONVENTIONAL_KEYS = ("logits", "out")


def _describe(output: object) -> str:
    if isinstance(output, torch.Tensor):
        return f"tensor{tuple(output.shape)}"
    if isinstance(output, Mapping):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in output.items()) + "}"
    if isinstance(output, (tuple, list)):
        return "(" + ", ".join(_describe(v) for v in output) + ")"
    return type(output).__name__


def select_output(output: object, selector: OutputSelector = None) -> torch.Tensor:
    """The tensor to explain from a model's raw output.

    ``selector`` is an index (tuples, lists), a key (dicts, or an attribute name), or a callable.
    With ``None``: a tensor is used as is; a dict, or an object such as a Hugging Face output, is
    read at ``"logits"`` or ``"out"`` (torchvision segmentation) when present. Anything else
    is an error that shows the output's structure, because guessing would explain the wrong thing.
    """
    if callable(selector):
        selected = selector(output)
    elif selector is not None:
        try:
            if isinstance(selector, str) and not isinstance(output, Mapping):
                selected = getattr(output, selector)
            else:
                selected = output[selector]  # type: ignore[index]
        except (KeyError, IndexError, AttributeError, TypeError) as error:
            raise ValueError(f"output={selector!r} does not select anything from the model's output {_describe(output)}") from error
    elif isinstance(output, torch.Tensor):
        selected = output
    else:
        selected = None
        for key in _CONVENTIONAL_KEYS:
            if isinstance(output, Mapping) and isinstance(output.get(key), torch.Tensor):
                selected = output[key]
                break
            if not isinstance(output, Mapping) and isinstance(getattr(output, key, None), torch.Tensor):
                selected = getattr(output, key)
                break
        if selected is None:
            raise TypeError(
                f"the model returned {_describe(output)}, not a tensor; pass output=<index, key or callable> "
                "to say which part to explain (e.g. output=0 for the first element of a tuple)"
            )
    if not isinstance(selected, torch.Tensor):
        raise TypeError(f"the selected model output is {type(selected).__name__}, not a tensor")
    return selected
