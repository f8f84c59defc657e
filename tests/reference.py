"""An independent float64 re-implementation of the CAM methods, for the tests.

It shares no code with camlens: the model is split by hand into ``features`` (input → layer) and
``head`` (layer → logits), gradients come from one plain autograd call on the float64 copy, and the
weight rules are written in NumPy from the papers' equations.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

WEIGHT_METHODS = ("gradcam", "gradcam_counterfactual", "gradcampp", "xgradcam")
SPATIAL_METHODS = ("layercam", "hirescam")
GRADIENT_METHODS = WEIGHT_METHODS + SPATIAL_METHODS


def split_gradients(
    features: Callable[[torch.Tensor], torch.Tensor],
    head: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    classes: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Activations A, gradients G of the class logits, logits and classes, in float64."""
    with torch.no_grad():
        activations = features(images.double())
    activations.requires_grad_(True)
    logits = head(activations)
    if classes is None:
        classes = logits.argmax(dim=1)
    score = logits[torch.arange(len(classes)), classes].sum()
    (gradients,) = torch.autograd.grad(score, activations)
    return activations.detach().numpy(), gradients.numpy(), logits.detach().numpy(), classes.numpy()


def weights(method: str, A: np.ndarray, G: np.ndarray) -> np.ndarray:
    Z = A.shape[2] * A.shape[3]
    if method == "gradcam":
        return G.sum(axis=(2, 3)) / Z
    if method == "gradcam_counterfactual":
        return -G.sum(axis=(2, 3)) / Z
    if method == "gradcampp":
        numerator = G**2
        denominator = 2 * G**2 + A.sum(axis=(2, 3), keepdims=True) * G**3
        alpha = np.divide(numerator, denominator, out=np.zeros_like(G), where=denominator != 0)
        return (alpha * np.maximum(G, 0)).sum(axis=(2, 3))
    if method == "xgradcam":
        total = A.sum(axis=(2, 3))
        return np.divide((A * G).sum(axis=(2, 3)), total, out=np.zeros_like(total), where=total != 0)
    raise KeyError(method)


def layer_map(method: str, A: np.ndarray, G: np.ndarray) -> np.ndarray:
    if method in WEIGHT_METHODS:
        return np.maximum(np.einsum("nk,nkhw->nhw", weights(method, A, G), A), 0)
    if method == "layercam":
        return np.maximum((np.maximum(G, 0) * A).sum(axis=1), 0)
    if method == "hirescam":
        return np.maximum((G * A).sum(axis=1), 0)
    raise KeyError(method)


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return F.interpolate(torch.from_numpy(maps)[:, None], size=size, mode="bilinear", align_corners=False)[:, 0].numpy()


def double(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model).double().eval()


def assert_close(actual: torch.Tensor | np.ndarray, expected: np.ndarray, rtol: float, what: str = "") -> None:
    """Max absolute difference within ``rtol`` of the expected values' largest magnitude."""
    actual = actual.detach().double().cpu().numpy() if isinstance(actual, torch.Tensor) else actual
    scale = max(float(np.abs(expected).max()), 1e-12)
    error = float(np.abs(actual - expected).max())
    assert error <= rtol * scale, f"{what}: max error {error:.3g} exceeds {rtol:g} × scale {scale:.3g}"
