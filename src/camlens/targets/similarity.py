r"""Why two images match: the cosine similarity of the model's embedding with a reference one.

:math:`y = \frac{e \cdot r}{\lVert e \rVert\, \lVert r \rVert}` for the embedding ``e`` (D,) the model
returns for an image and a reference ``r``: another image's embedding (why two faces match, why a
retrieval returned this photo) or a text embedding given as a tensor.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .base import Target, TargetScores

__all__ = ["SimilarityTarget"]


class SimilarityTarget(Target):
    """Cosine similarity between the model's embedding (B, D) and ``reference``: (D,) for every
    image or (B, D), one per image. A row per image; its class is -1."""

    def __init__(self, reference: torch.Tensor):
        reference = torch.as_tensor(reference)
        if reference.dim() not in (1, 2) or not reference.is_floating_point() or reference.shape[-1] == 0:
            raise ValueError(f"the reference must be a floating-point embedding (D,) or (B, D), not "
                             f"{reference.dtype} {tuple(reference.shape)}")
        self.reference = reference.detach()

    def _reference(self, embedding: torch.Tensor, image_index: torch.Tensor | None = None) -> torch.Tensor:
        if embedding.dim() != 2:
            raise ValueError(f"a similarity target needs an embedding (B, D); the output has shape {tuple(embedding.shape)}. "
                             "Explain the model's embedding (e.g. its pooled features), or pick it with output=")
        reference = self.reference.to(embedding.device, embedding.dtype)
        if reference.shape[-1] != embedding.shape[1]:
            raise ValueError(f"the reference has dimension {reference.shape[-1]}, the model's embedding {embedding.shape[1]}")
        if reference.dim() == 1:
            return reference.expand_as(embedding)
        if image_index is not None:
            return reference[image_index]
        if reference.shape[0] != embedding.shape[0]:
            raise ValueError(f"got {reference.shape[0]} references for a batch of {embedding.shape[0]} images")
        return reference

    def __call__(self, output: torch.Tensor) -> TargetScores:
        scores = F.cosine_similarity(output, self._reference(output), dim=1)
        image_index = torch.arange(output.shape[0], device=output.device)
        return TargetScores(scores, image_index, torch.full_like(image_index, -1))

    def rescore(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        return F.cosine_similarity(output, self._reference(output, image_index), dim=1)
