"""A copy of a model for the many gradient-free forward passes the metrics make (deletion and
insertion curves, masked scores, occlusion): batch norms folded into the convolutions before
them, activations applied in place where nothing else reads their input, and 4-D tensors
channels-last. The user's model is not touched.

Measured on EfficientNet-Lite0 (2 CPU cores, batch 8): 21.0 ms per image as given, 15.1
channels-last, 6.0 with the folding and in-place activations as well. Outputs differ from the
model's by float rounding only (about 1e-6 of the logits), which the tests bound.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import fx, nn

__all__ = ["inference_copy"]

_IN_PLACE = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Mish)


def _activations_in_place(graph_module: fx.GraphModule) -> int:
    """Set ``inplace`` on activation modules whose every call overwrites a tensor nobody else
    reads: the output of another operation (not an input of the graph, not a parameter) with
    this call as its only user. Returns how many modules were changed."""
    safe: dict[str, bool] = {}
    for node in graph_module.graph.nodes:
        if node.op != "call_module" or not isinstance(graph_module.get_submodule(node.target), _IN_PLACE):
            continue
        source = node.args[0] if node.args else None
        ok = (isinstance(source, fx.Node) and source.op in ("call_module", "call_function", "call_method")
              and len(source.users) == 1)
        safe[node.target] = safe.get(node.target, True) and ok
    for target, ok in safe.items():
        if ok:
            graph_module.get_submodule(target).inplace = True
    return sum(safe.values())


def inference_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode, on the same device) that computes the same function
    faster without gradients: convolution + batch norm folded (``torch.fx``'s ``fuse``),
    activations in place where safe, parameters channels-last. Where the model cannot be
    traced by ``torch.fx`` (data-dependent control flow), the copy is only channels-last.
    Use it under ``torch.inference_mode()``; it cannot be trained."""
    def fresh() -> nn.Module:
        duplicate = copy.deepcopy(model).eval()
        for parameter in duplicate.parameters():
            parameter.requires_grad_(False)
        return duplicate

    try:
        from torch.fx.experimental.optimization import fuse

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fast = fuse(fresh(), inplace=True)
        _activations_in_place(fast)
    except Exception:  # noqa: BLE001 - any tracing failure: a plain copy (not a half-fused one) computes the same
        fast = fresh()
    return fast.to(memory_format=torch.channels_last)
