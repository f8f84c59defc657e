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


# function -> (in-place?, upper bound of the linear range)
_RELUS: dict[Any, tuple[bool, float | None]] = {
    F.relu: (False, None),
    torch.relu: (False, None),
    torch.Tensor.relu: (False, None),
    torch.relu_: (True, None),
    torch.Tensor.relu_: (True, None),
    F.relu_: (True, None),
    F.relu6: (False, 6.0),
}


class GuidedReLUs(TorchFunctionMode):
    """Within this mode every ReLU-family call backpropagates according to ``switch``."""

    def __init__(self, switch: GuidedSwitch):
        super().__init__()
        self.switch = switch

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = dict(kwargs or {})
        if func in _RELUS or func is F.hardtanh:
            x, *rest = args
            if func is F.hardtanh:  # nn.ReLU6 calls F.hardtanh(x, 0, 6)
                bounds = list(rest[:2]) + [None, None]
                low = kwargs.get("min_val", bounds[0] if bounds[0] is not None else -1.0)
                high = kwargs.get("max_val", bounds[1] if bounds[1] is not None else 1.0)
                if low != 0:
                    return func(*args, **kwargs)
                inplace, upper = bool(kwargs.get("inplace", rest[2] if len(rest) > 2 else False)), float(high)
            else:
                inplace, upper = _RELUS[func]
                inplace = inplace or bool(kwargs.get("inplace", rest[0] if rest else False))
            if isinstance(x, torch.Tensor) and x.requires_grad and torch.is_grad_enabled():
                return _SwitchableReLU.apply(x, func, tuple(rest), kwargs, upper, self.switch, inplace)
        return func(*args, **kwargs)
