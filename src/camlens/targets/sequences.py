r"""Targets over sequence outputs (B, T, V): per-position scores over a vocabulary.

- :class:`CaptionTarget`: a given token sequence, teacher-forced: the whole caption's
  log-probability :math:`\sum_t \log p(w_t \mid w_{<t}, I)`, or one row per chosen word (a map per
  word, as in the Grad-CAM paper's captioning figure).
- :class:`CTCTarget`: what a CTC reader (a text recognizer) read, without teacher forcing: one row
  per character of the greedy path, scored at the step where it is emitted.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import Target, TargetScores
from .classification import ScoreKind, check_score

__all__ = ["CaptionTarget", "CTCTarget", "greedy_ctc"]


def _per_position(output: torch.Tensor, what: str) -> None:
    if output.dim() != 3:
        raise ValueError(
            f"{what} needs per-position scores (B, T, V) over a vocabulary; the output has shape "
            f"{tuple(output.shape)}" + (". A (B, V) output scores one class per image: use a class target"
                                        if output.dim() == 2 else "")
        )


def _token_scores(output: torch.Tensor, score: ScoreKind) -> torch.Tensor:
    if score == "logit":
        return output
    return output.log_softmax(dim=-1) if score == "log_softmax" else output.softmax(dim=-1)


class CaptionTarget(Target):
    r"""The score of a given token sequence under a captioner fed that sequence (teacher forcing).

    ``output[:, t]`` are the scores for the token at position ``t`` of ``tokens``: the caller
    aligns them (a decoder fed ``<bos> w_1 … w_{T-1}`` predicts ``w_1 … w_T``; pass those). The
    whole caption is one row per image,

    .. math:: y = \sum_{t:\, w_t \neq \mathrm{pad}} \log p(w_t \mid w_{<t}, I),

    and ``words`` (positions ``t``) give one row per image and word instead,
    :math:`y_t = \log p(w_t \mid w_{<t}, I)`, image-major. A row's class is its token and its
    position is ``t``.

    Args:
        tokens: (T,) for every image, or (B, T), integer token ids.
        words: positions to explain one by one; ``None`` explains the whole caption.
        pad: a token id that is not scored (captions of different lengths in one batch).
        score: ``"log_softmax"`` (default, the log-probability), ``"logit"`` or ``"softmax"``.
    """

    def __init__(self, tokens: Sequence[int] | torch.Tensor, words: Sequence[int] | None = None,
                 pad: int | None = None, score: ScoreKind = "log_softmax"):
        check_score(score)
        tokens = torch.as_tensor(tokens)
        if tokens.is_floating_point() or tokens.dtype == torch.bool or tokens.dim() not in (1, 2) or tokens.shape[-1] == 0:
            raise ValueError(f"tokens must be integer ids of shape (T,) or (B, T), not {tokens.dtype} {tuple(tokens.shape)}")
        self.tokens = tokens.long()
        self.words = None if words is None else [int(w) for w in words]
        if self.words is not None and not self.words:
            raise ValueError("words is empty: give positions to explain, or words=None for the whole caption")
        self.pad = pad
        self.score = score

    def _tokens(self, output: torch.Tensor) -> torch.Tensor:
        """The (B, T) tokens, checked against the output's shape and vocabulary."""
        _per_position(output, "a caption target")
        batch, steps, vocabulary = output.shape
        tokens = self.tokens.to(output.device)
        if tokens.shape[-1] != steps:
            raise ValueError(f"the caption has {tokens.shape[-1]} tokens, the output {steps} positions: "
                             "give one token per output position")
        if tokens.dim() == 2 and tokens.shape[0] != batch:
            raise ValueError(f"got {tokens.shape[0]} captions for a batch of {batch} images")
        scored = tokens != self.pad if self.pad is not None else torch.ones_like(tokens, dtype=torch.bool)
        bad = scored & ((tokens < 0) | (tokens >= vocabulary))
        if bad.any():
            where = bad.nonzero()[0].tolist()
            raise ValueError(f"token {int(tokens[tuple(where)])} at position {where[-1]} is outside the vocabulary "
                             f"of {vocabulary} tokens")
        for word in self.words or ():
            if not 0 <= word < steps:
                raise ValueError(f"word position {word} is out of range: the caption has {steps} positions")
            if self.pad is not None and (tokens[..., word] == self.pad).any():
                raise ValueError(f"word position {word} is padding in a caption: a padded position is not scored")
        return tokens.expand(batch, steps)

    def _gather(self, scores: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Each position's score of its token (B, T); padded positions read token 0 (and are masked)."""
        readable = torch.where(tokens != self.pad, tokens, 0) if self.pad is not None else tokens
        return scores.gather(2, readable[..., None])[..., 0]

    def __call__(self, output: torch.Tensor) -> TargetScores:
        tokens = self._tokens(output)
        batch = output.shape[0]
        per_token = self._gather(_token_scores(output, self.score), tokens)
        images = torch.arange(batch, device=output.device)
        if self.words is None:
            if self.pad is not None:
                per_token = per_token * (tokens != self.pad)
            return TargetScores(per_token.sum(dim=1), images, torch.full_like(images, -1))
        positions = torch.tensor(self.words, device=output.device).repeat(batch)
        image_index = images.repeat_interleave(len(self.words))
        classes = tokens[image_index, positions]
        return TargetScores(per_token[image_index, positions], image_index, classes, positions)

    def rescore(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        scores = _token_scores(output, self.score)
        if positions is not None:
            rows = torch.arange(output.shape[0], device=output.device)
            return scores[rows, positions, classes]
        tokens = self.tokens.to(output.device)
        tokens = tokens[image_index] if tokens.dim() == 2 else tokens.expand(output.shape[0], -1)
        per_token = self._gather(scores, tokens)
        if self.pad is not None:
            per_token = per_token * (tokens != self.pad)
        return per_token.sum(dim=1)

    def confidence(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor,
                   positions: torch.Tensor | None = None) -> torch.Tensor:
        """Score-CAM's weight reads a probability: the word's (or caption's) probability
        :math:`e^y` for log-probability scores, the score itself otherwise."""
        return _probability(self.rescore(output, classes, image_index, positions), self.score)


def _probability(scores: torch.Tensor, score: ScoreKind) -> torch.Tensor:
    return scores.exp() if score == "log_softmax" else scores


def greedy_ctc(output: torch.Tensor, blank: int = 0) -> list[list[tuple[int, int]]]:
    """The greedy (best-path) CTC reading of per-step scores (B, T, V): for each image, its
    characters as ``(step, token)``, each at the first step of its run, blanks and repeats removed."""
    best = output.detach().argmax(dim=-1)
    reading = []
    for path in best.tolist():
        characters, previous = [], blank
        for step, token in enumerate(path):
            if token != blank and token != previous:
                characters.append((step, token))
            previous = token
        reading.append(characters)
    return reading


class CTCTarget(Target):
    r"""What a CTC reader read: one row per character of the greedy path, image-major, scored at
    the step ``t`` where the character is emitted (the first step of its run),
    :math:`y = \log p_t(c)`. A row's class is the character's token and its position is ``t``.
    An image whose reading is empty has no rows; when no image reads anything, that is an error.

    ``blank``: the CTC blank token; ``score``: ``"log_softmax"`` (default), ``"logit"`` or ``"softmax"``.
    """

    def __init__(self, blank: int = 0, score: ScoreKind = "log_softmax"):
        check_score(score)
        self.blank = blank
        self.score = score

    def __call__(self, output: torch.Tensor) -> TargetScores:
        _per_position(output, "a CTC target")
        if not 0 <= self.blank < output.shape[-1]:
            raise ValueError(f"blank token {self.blank} is outside the vocabulary of {output.shape[-1]} tokens")
        rows = [(image, step, token) for image, read in enumerate(greedy_ctc(output, self.blank)) for step, token in read]
        if not rows:
            raise ValueError("the reader reads no character in any image (every step is blank): nothing to explain")
        image_index, positions, classes = torch.tensor(rows, device=output.device).unbind(dim=1)
        return TargetScores(_token_scores(output, self.score)[image_index, positions, classes], image_index, classes,
                            positions)

    def rescore(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        rows = torch.arange(output.shape[0], device=output.device)
        return _token_scores(output, self.score)[rows, positions, classes]

    def confidence(self, output: torch.Tensor, classes: torch.Tensor, image_index: torch.Tensor,
                   positions: torch.Tensor | None = None) -> torch.Tensor:
        """The character's probability for log-probability scores (see :meth:`CaptionTarget.confidence`)."""
        return _probability(self.rescore(output, classes, image_index, positions), self.score)
