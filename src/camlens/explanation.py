"""The result of :func:`camlens.explain`, and normalization of maps for display."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["Explanation", "normalize"]


@dataclass(frozen=True)
class Explanation:
    """Maps for N explained rows (one per image and target class; ``image_index`` says which image).

    Per method name ``m``:

    - ``layer_maps[m]`` (N, h, w): the map at the layer's resolution, after the method's ReLU;
    - ``maps[m]`` (N, H, W): ``layer_maps[m]`` bilinearly upsampled to the input size, *not*
      normalized (see :func:`normalize`); for input methods (Guided Backprop, Guided Grad-CAM) the
      maximum over input channels of the absolute attribution;
    - ``weights[m]`` (N, K): channel weights, for methods that define them;
    - ``input_maps[m]`` (N, C, H, W): input-resolution attributions of the input methods.

    Shared: ``scores`` (N,) the target's value, ``targets`` (N,) the class explained (``-1`` for
    targets that name no class; the token for a caption word, the label for a box),
    ``image_index`` (N,), ``positions`` (N,) which part of the output each row scores (a caption
    step, a reference box; ``None`` for targets whose rows are whole outputs), ``outputs`` the
    model's (selected) output for the B images (a tensor, or the detections as the model returned
    them), ``activations`` (B, K, h, w) and ``gradients`` (N, K, h, w) at the layer (``None`` when
    no method needed gradients); ``errors[m]`` (N, K): standard errors of weights that are
    estimates (sampled Shapley values), and ``sample_counts[m]`` (N,) how many samples (permutation
    pairs) each estimate used (0 where exact). All tensors are detached and on the input's device.
    """

    layer: str
    methods: tuple[str, ...]
    layer_maps: Mapping[str, torch.Tensor]
    maps: Mapping[str, torch.Tensor]
    weights: Mapping[str, torch.Tensor]
    input_maps: Mapping[str, torch.Tensor]
    scores: torch.Tensor
    targets: torch.Tensor
    image_index: torch.Tensor
    outputs: object
    activations: torch.Tensor
    gradients: torch.Tensor | None
    errors: Mapping[str, torch.Tensor] = field(default_factory=dict)
    positions: torch.Tensor | None = None
    sample_counts: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def image(self, index: int) -> Explanation:
        """The explanation of image ``index`` alone: its rows (``image_index`` renumbered to 0),
        its activations and, where they are a tensor, its outputs."""
        rows = (self.image_index == index).nonzero().flatten()
        pick = lambda values: {m: v[rows] for m, v in values.items()}  # noqa: E731
        outputs = self.outputs[index:index + 1] if isinstance(self.outputs, torch.Tensor) else self.outputs
        return Explanation(
            layer=self.layer, methods=self.methods, layer_maps=pick(self.layer_maps), maps=pick(self.maps),
            weights=pick(self.weights), input_maps=pick(self.input_maps), scores=self.scores[rows],
            targets=self.targets[rows], image_index=torch.zeros_like(rows), outputs=outputs,
            activations=self.activations[index:index + 1],
            gradients=None if self.gradients is None else self.gradients[rows], errors=pick(self.errors),
            positions=None if self.positions is None else self.positions[rows], sample_counts=pick(self.sample_counts),
        )

    def saved(self, rows: Sequence[int] | None = None) -> dict:
        """What ``maps.pt`` holds for ``rows`` (all by default), on the CPU, for ``torch.load``:
        ``classes`` (the explained class per row), ``scores``, ``maps``, ``layer_maps`` and
        ``weights`` per method, and ``positions`` where rows score parts of an output."""
        rows = list(range(len(self))) if rows is None else list(rows)
        saved = {
            "classes": self.targets[rows].cpu(),
            "scores": self.scores[rows].cpu(),
            "maps": {m: self.maps[m][rows].cpu() for m in self.methods},
            "layer_maps": {m: self.layer_maps[m][rows].cpu() for m in self.layer_maps},
            "weights": {m: self.weights[m][rows].cpu() for m in self.weights},
        }
        if self.positions is not None:
            saved["positions"] = self.positions[rows].cpu()
        return saved

    def __repr__(self) -> str:
        height, width = next(iter(self.maps.values())).shape[-2:] if self.maps else (0, 0)
        return (
            f"Explanation(layer={self.layer!r}, methods={self.methods}, rows={len(self)}, "
            f"images={self.activations.shape[0]}, maps {height}×{width}, device={self.scores.device})"
        )


def normalize(maps: torch.Tensor) -> torch.Tensor:
    """Min–max normalize each map of ``maps`` (N, ...) to [0, 1] over all but the first dimension.
    A constant map becomes all zeros (it highlights nothing)."""
    flat = maps.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = torch.where(span > 0, (flat - low) / torch.where(span > 0, span, 1), torch.zeros_like(flat))
    return scaled.view_as(maps)
