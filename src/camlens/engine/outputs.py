"""Reading the prediction out of whatever the model returns, and handling it whole.

A prediction is usually one tensor with the batch in its first dimension. Targets that read
*structured* outputs (detections) take it as the model returns it: a ``list`` holds one item per
image (torchvision detectors' ``list[dict(boxes, labels, scores)]``), while a ``tuple`` or a
``dict`` holds batched values. The helpers below slice, join, compare and detach any of these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

__all__ = ["OutputSelector", "describe", "select_output", "take_rows", "concat_outputs", "detach_output", "output_difference",
           "batch_size_of"]

OutputSelector = int | str | Callable[[object], torch.Tensor] | None

_CONVENTIONAL_KEYS = ("logits", "out")


def describe(output: object) -> str:
    """A value's structure for messages: tensors by shape, containers by their contents."""
    if isinstance(output, torch.Tensor):
        return f"tensor{tuple(output.shape)}"
    if isinstance(output, Mapping):
        return "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in output.items()) + "}"
    if isinstance(output, (tuple, list)):
        return "(" + ", ".join(describe(v) for v in output) + ")"
    return type(output).__name__


def select_output(output: object, selector: OutputSelector = None, *, structured: bool = False) -> object:
    """The prediction to explain from a model's raw output.

    ``selector`` is an index (tuples, lists), a key (dicts, or an attribute name), or a callable.
    With ``None``: a tensor is used as is; a dict, or an object such as a Hugging Face output, is
    read at ``"logits"`` or ``"out"`` (torchvision segmentation) when present. Anything else
    is an error that shows the output's structure, because guessing would explain the wrong thing.
    ``structured=True`` (for targets that read structured outputs) keeps the output as it is when
    no selector is given, and accepts a structured selection.
    """
    if structured and selector is None:
        return output
    if callable(selector):
        selected = selector(output)
    elif selector is not None:
        try:
            if isinstance(selector, str) and not isinstance(output, Mapping):
                selected = getattr(output, selector)
            else:
                selected = output[selector]  # type: ignore[index]
        except (KeyError, IndexError, AttributeError, TypeError) as error:
            raise ValueError(f"output={selector!r} does not select anything from the model's output {describe(output)}") from error
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
                f"the model returned {describe(output)}, not a tensor; pass output=<index, key or callable> "
                "to say which part to explain (e.g. output=0 for the first element of a tuple)"
            )
    if not isinstance(selected, torch.Tensor) and not structured:
        raise TypeError(f"the selected model output is {type(selected).__name__}, not a tensor")
    return selected


def take_rows(output: object, index: torch.Tensor) -> object:
    """Rows ``index`` of a prediction (see the module docstring for lists, tuples and dicts)."""
    if isinstance(output, torch.Tensor):
        return output[index]
    if isinstance(output, list):
        return [output[i] for i in index.tolist()]
    if isinstance(output, tuple):
        return tuple(take_rows(value, index) for value in output)
    if isinstance(output, Mapping):
        return {key: take_rows(value, index) for key, value in output.items()}
    raise TypeError(f"cannot take rows of a {type(output).__name__} output")


def concat_outputs(parts: list[object]) -> object:
    """The predictions of consecutive chunks of rows, joined."""
    first = parts[0]
    if len(parts) == 1:
        return first
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, list):
        return [item for part in parts for item in part]
    if isinstance(first, tuple):
        return tuple(concat_outputs([part[i] for part in parts]) for i in range(len(first)))
    if isinstance(first, Mapping):
        return {key: concat_outputs([part[key] for part in parts]) for key in first}
    raise TypeError(f"cannot join {type(first).__name__} outputs")


def detach_output(output: object) -> object:
    """A prediction with every tensor in it detached from the graph."""
    if isinstance(output, torch.Tensor):
        return output.detach()
    if isinstance(output, (list, tuple)):
        return type(output)(detach_output(value) for value in output)
    if isinstance(output, Mapping):
        return {key: detach_output(value) for key, value in output.items()}
    return output


def batch_size_of(output: object) -> int | None:
    """How many images a prediction covers (``None`` when it does not say)."""
    if isinstance(output, torch.Tensor):
        return int(output.shape[0]) if output.dim() > 0 else None
    if isinstance(output, list):
        return len(output)
    values = list(output.values()) if isinstance(output, Mapping) else list(output) if isinstance(output, tuple) else []
    return next((size for size in map(batch_size_of, values) if size is not None), None)


def output_difference(a: object, b: object) -> float:
    """The largest absolute difference between two predictions of the same structure, relative to
    ``max(1, max |b|)``; ``inf`` when their structures or shapes differ."""
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def collect(x: object, y: object) -> bool:
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            pairs.append((x, y))
            return x.shape == y.shape
        if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
            return len(x) == len(y) and all(collect(p, q) for p, q in zip(x, y))
        if isinstance(x, Mapping) and isinstance(y, Mapping):
            return x.keys() == y.keys() and all(collect(x[k], y[k]) for k in x)
        return x == y

    if not collect(a, b):
        return float("inf")
    floats = [(x, y) for x, y in pairs if x.is_floating_point()]
    if any(not torch.equal(x, y) for x, y in pairs if not x.is_floating_point()):
        return float("inf")
    if not floats:
        return 0.0
    scale = max(1.0, max(float(y.abs().max()) if y.numel() else 0.0 for _, y in floats))
    return max(float((x - y).abs().max()) if x.numel() else 0.0 for x, y in floats) / scale
