"""What every target is: a function from the model's output to one differentiable scalar per row.

A target returns a :class:`TargetScores`: ``scores`` (N,), and for each of the N rows the image it
belongs to and the class it names (``-1`` when it names none). One row per image is the common case;
:class:`~camlens.targets.TopK` gives k rows per image (image-major: image 0's top-1..top-k, then
image 1's, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["TargetScores", "Target"]


@dataclass(frozen=True)
class TargetScores:
    scores: torch.Tensor       # (N,) differentiable
    image_index: torch.Tensor  # (N,) long: the image each row explains
    classes: torch.Tensor      # (N,) long: the class (or token, or label) each row explains, -1 for none
    # (N,) long: which part of the output the row scores (a caption step, a reference box), when
    # the class alone does not say; None for targets whose rows are whole outputs
    positions: torch.Tensor | None = None
    # when every image has this many rows, image-major (rows b·k … b·k + k − 1 explain image b),
    # as for class, top-k and region targets: known without reading image_index from the device
    per_image: int | None = None

    def __post_init__(self) -> None:
        rows = self.scores.shape
        if self.image_index.shape != rows or self.classes.shape != rows or (
                self.positions is not None and self.positions.shape != rows):
            raise ValueError("a target must give one image index, class and position per score")


class Target:
    """Base class: ``target(output) -> TargetScores``, and ``rescore``: the same quantity on the
    output of a modified input or activation, for rows whose class, position and image are
    already fixed (perturbation methods must not re-rank the classes of a perturbed output).

    ``structured``: the target reads the model's output as the model returns it (a list of
    detections, say) rather than one selected tensor.
    """

    structured: bool = False

    def __call__(self, output: torch.Tensor) -> TargetScores:  # pragma: no cover - interface
        raise NotImplementedError

    def rescore(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (M,) of ``output`` (M, ...) for row m's class ``classes[m]`` (and position
        ``positions[m]``) of image ``image_index[m]``."""
        raise NotImplementedError  # pragma: no cover - interface

    def confidence(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor,
                   positions: torch.Tensor | None = None) -> torch.Tensor:
        """What Score-CAM reads on a masked input: by default the target's own score; class
        targets override it with the class probability (Score-CAM's official choice)."""
        if positions is None:  # a subclass's rescore may predate positions
            return self.rescore(output, classes, image_index)
        return self.rescore(output, classes, image_index, positions)
