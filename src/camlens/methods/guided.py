"""Guided Backpropagation (Springenberg et al., ICLR 2015 workshop) without touching the model.

At every ReLU the backward signal passes only where the forward input was positive AND the
incoming gradient is positive:

    R_in = R_out · [x > 0] · [R_out > 0]

(for ReLU6 the forward condition is 0 < x < 6). Instead of swapping the model's modules, a
:class:`~torch.overrides.TorchFunctionMode` intercepts the ReLU functions themselves, so
``nn.ReLU``/``nn.ReLU6`` modules, ``F.relu``, ``torch.relu``, ``Tensor.relu_`` and in-place variants
are all covered, and the model is never modified. Each intercepted ReLU computes its ordinary
forward; its backward consults a :class:`GuidedSwitch`, so one recorded forward serves both the
ordinary gradients (for Grad-CAM) and the guided ones (switch on).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from ..engine.interception import IN_PLACE_TWINS, is_in_place

__all__ = ["GuidedSwitch", "GuidedReLUs"]


class GuidedSwitch:
    """Whether intercepted ReLUs currently backpropagate the guided rule (else the true gradient)."""

    def __init__(self) -> None:
        self.guided = False


class _SwitchableReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, relu: Any, args: tuple, kwargs: dict, upper: float | None,
                switch: GuidedSwitch, inplace: bool) -> torch.Tensor:
        out = relu(x, *args, **kwargs)
        if inplace:
            ctx.mark_dirty(x)
        # The output alone tells where the input was inside the linear range.
        passing = out > 0 if upper is None else (out > 0) & (out < upper)
        ctx.save_for_backward(passing)
        ctx.switch = switch
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        (passing,) = ctx.saved_tensors
        grad_in = grad * passing
        if ctx.switch.guided:
            grad_in = grad_in.clamp_min(0)
        return grad_in, None, None, None, None, None, None


# ReLU-family functions → the upper end of their linear range (None: unbounded)
_RELUS: dict[Any, float | None] = {
    F.relu: None, torch.relu: None, torch.Tensor.relu: None, F.relu6: 6.0, **dict.fromkeys(IN_PLACE_TWINS, None),
}


class GuidedReLUs(TorchFunctionMode):
    """Within this mode every ReLU-family call backpropagates according to ``switch``."""

    def __init__(self, switch: GuidedSwitch):
        super().__init__()
        self.switch = switch

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = dict(kwargs or {})
        x = args[0] if args else None
        if func is F.hardtanh and kwargs.get("min_val", -1.0) == 0:  # nn.ReLU6 is F.hardtanh(x, 0, 6)
            upper = float(kwargs.get("max_val", 1.0))
        elif func in _RELUS:
            upper = _RELUS[func]
        else:
            return func(*args, **kwargs)
        if isinstance(x, torch.Tensor) and x.requires_grad and torch.is_grad_enabled():
            return _SwitchableReLU.apply(x, func, tuple(args[1:]), kwargs, upper, self.switch, is_in_place(func, kwargs))
        return func(*args, **kwargs)
