"""CAM's weights: the classifier row of each explained class, for GAP → linear heads only."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["classifier_weights"]


def classifier_weights(
    model: nn.Module, activations: torch.Tensor, logits: torch.Tensor, image_index: torch.Tensor, classes: torch.Tensor
) -> torch.Tensor:
    r"""CAM (Zhou et al., CVPR 2016): :math:`w_k = W_{c,k}`, the final linear layer's weight from
    channel k to class c, for rows explaining (image ``image_index[n]``, class ``classes[n]``).

    CAM is only defined when the layer is followed by global average pooling and one linear layer.
    That is checked, not assumed: the logits must equal :math:`W_c \cdot \mathrm{GAP}(A) + b_c`.
    """
    channels = activations.shape[1]
    if (classes < 0).any():
        raise ValueError("cam explains classes; the target names none (use a class target, or gradcam)")
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear) and m.in_features == channels]
    if len(linears) != 1:
        names = [name for name, _ in linears]
        found = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "") if names else "none"
        raise ValueError(
            f"cam needs the layer to be followed by global average pooling and one nn.Linear classifier with "
            f"{channels} inputs; {type(model).__name__} has {len(names) or 'no'} linear layer(s) of that width "
            f"({found}), as transformers and other heads do. On a GAP → linear head gradcam gives the same map "
            "(up to the factor 1/(h·w)); elsewhere use gradcam"
        )
    name, linear = linears[0]
    weight = linear.weight.detach().to(activations.dtype)
    pooled = activations.detach().mean(dim=(2, 3))[image_index]
    rows = weight[classes]
    expected = (pooled * rows).sum(dim=1)
    if linear.bias is not None:
        expected = expected + linear.bias.detach().to(activations.dtype)[classes]
    actual = logits.detach()[image_index, classes]
    scale = actual.abs().max().clamp_min(1.0)
    if not torch.allclose(expected, actual, rtol=1e-3, atol=1e-3 * float(scale)):
        raise ValueError(
            f"cam needs the layer to be followed by global average pooling and the linear layer {name!r}, "
            "but the logits do not equal that head's output on these activations "
            f"(max difference {float((expected - actual).abs().max()):.3g}); use gradcam for other heads"
        )
    return rows
