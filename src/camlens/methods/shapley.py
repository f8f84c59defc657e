r"""Shapley values of the activation maps: the reference LIFT-CAM approximates.

The game, for one row: :math:`v(S) = y^c(A_S)`, the score when the maps in S are kept and the
others are set to zero, evaluated on the network after the layer only. The Shapley value is

.. math:: \phi_k = \sum_{S \subseteq N \setminus \{k\}} \frac{|S|!\,(K - |S| - 1)!}{K!}
          \big(v(S \cup \{k\}) - v(S)\big).

A map that is zero everywhere is a *null player*: setting it to zero changes nothing, so
:math:`v(S \cup \{k\}) = v(S)` for every S and :math:`\phi_k = 0` exactly. The game is played
among the other maps only, which gives the others the same values (a random permutation of all
players orders the others uniformly at random too) at a fraction of the cost: after a ReLU, many
maps of a real network are all zero for a given image (120 to 406 of MobileNetV2's 960 at
``features.17.conv.0``).

Exact by enumerating all :math:`2^{K'}` coalitions of the :math:`K'` non-null maps when
:math:`K'` is small; otherwise estimated by sampling permutations (each permutation gives one
marginal contribution per map), in antithetic pairs (a permutation and its reverse), with the
standard error of the mean over pairs, optionally stopping once it is small enough.

Where the network after the layer begins with channel-wise operations, a linear layer and
affine modules (:mod:`camlens.engine.channelwise`), a coalition's value at the end of them is
a sum of one step per kept map: a permutation's K' + 1 coalitions are a running sum plus the
rest of the network, not K' + 1 passes through all of it.
"""

from __future__ import annotations

import hashlib
import math

import torch

from .evidence import Evidence

__all__ = ["shapley_weights", "exact_shapley", "sampled_shapley", "row_generator"]


def exact_shapley(evidence: Evidence, row: int, players: torch.Tensor) -> torch.Tensor:
    """All :math:`2^{K'}` coalitions of one row's ``players`` (K' of them; 20 or so is
    practical): their Shapley values (K',)."""
    channels = len(players)
    device = evidence.activations.device
    coalitions = torch.arange(2**channels, device=device)
    masks = (coalitions[:, None] >> torch.arange(channels, device=device)) & 1
    values = evidence.values_coalitions(row, players, masks.bool()).double()
    sizes = masks.sum(dim=1)
    weight = torch.tensor(
        [math.factorial(s) * math.factorial(channels - s - 1) / math.factorial(channels) for s in range(channels)],
        dtype=torch.float64, device=device,
    )
    phi = torch.empty(channels, dtype=torch.float64, device=device)
    for k in range(channels):
        without = coalitions[masks[:, k] == 0]
        phi[k] = (weight[sizes[without]] * (values[without | (1 << k)] - values[without])).sum()
    return phi.to(evidence.activations.dtype)


def sampled_shapley(evidence: Evidence, row: int, players: torch.Tensor, pairs: int, generator: torch.Generator,
                    target_error: float | None = None, pairs_per_round: int = 4) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Permutation sampling of one row's ``players`` with antithetic pairs: the estimate and its
    standard error (K',), and the number of pairs drawn. Pairs are drawn ``pairs_per_round`` at a time and their coalitions
    evaluated together; with ``target_error``, sampling stops after the first round (of at
    least two pairs) whose largest standard error is at most ``target_error`` (in the score's
    units), else after ``pairs``."""
    channels = len(players)
    device = evidence.activations.device
    samples: list[torch.Tensor] = []
    with evidence.progress_bar(pairs, f"Shapley, row {row}: permutation pairs") as bar:
        while len(samples) < pairs:
            count = min(pairs_per_round, pairs - len(samples))
            orders = torch.stack([torch.randperm(channels, generator=generator) for _ in range(count)]).to(device)
            orders = torch.stack([orders, orders.flip(1)], dim=1).flatten(0, 1)       # each and its reverse
            values = evidence.values_growing(row, players, orders).double()           # (2 count, K' + 1)
            contributions = torch.empty(orders.shape, dtype=torch.float64, device=device)
            contributions.scatter_(1, orders, values[:, 1:] - values[:, :-1])         # by player, not position
            samples += list(contributions.view(count, 2, channels).mean(dim=1))
            bar.update(count)
            if target_error is not None and len(samples) > 1 and _error(samples).max() <= target_error:
                break
    mean = torch.stack(samples).mean(dim=0)
    dtype = evidence.activations.dtype
    return mean.to(dtype), _error(samples).to(dtype), len(samples)


def _error(samples: list[torch.Tensor]) -> torch.Tensor:
    """The standard error of the mean of the pair estimates (∞ from a single pair)."""
    if len(samples) < 2:
        return torch.full_like(samples[0], float("inf"))
    return torch.stack(samples).std(dim=0, unbiased=True) / math.sqrt(len(samples))


def row_generator(evidence: Evidence, row: int, seed: int) -> torch.Generator:
    """The permutations' generator of one row, seeded from ``seed`` and the row's content: its
    input image and its class (and position, for rows that score a part of the output). An
    image gets the same permutations wherever it sits in a batch and whatever else is in the
    batch. (Not its activations: a batch may change their last bits.)"""
    digest = hashlib.sha256(str(seed).encode())
    image = evidence.images[evidence.image_index[row]]
    digest.update(image.detach().cpu().contiguous().numpy().tobytes())
    digest.update(str(int(evidence.classes[row])).encode())
    if evidence.positions is not None:
        digest.update(str(int(evidence.positions[row])).encode())
    return torch.Generator(device="cpu").manual_seed(int.from_bytes(digest.digest()[:8], "little"))


def shapley_weights(evidence: Evidence, exact_up_to: int = 16, pairs: int = 32, seed: int = 0,
                    target_error: float | None = None,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shapley values of every row's maps (N, K), their standard errors (0 when exact) and the
    number of permutation pairs each row's estimate used (N,; 0 when exact).

    Null players (maps zero everywhere) get 0, exactly; among the K' others, exact when
    K' ≤ ``exact_up_to``, otherwise antithetic pairs of permutations: ``pairs`` of them, or
    fewer once every standard error is at most ``target_error`` (score units). Each row's
    permutations come from ``seed`` and the row's content (:func:`row_generator`), so a result
    is reproduced by the same call on the same image, alone or in any batch; a ``generator``
    given instead is drawn from row after row (the rows' order then matters).
    """
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1, not {pairs}")
    if target_error is not None and not target_error > 0:
        raise ValueError(f"target_error must be positive, not {target_error}")
    rows_count, channels = evidence.activations.shape[:2]
    weights = evidence.activations.new_zeros(rows_count, channels)
    errors = torch.zeros_like(weights)
    counts = torch.zeros(rows_count, dtype=torch.long, device=weights.device)
    with torch.inference_mode():
        for row in range(rows_count):
            players = evidence.activations[row].flatten(1).ne(0).any(dim=1).nonzero().flatten()
            if len(players) == 0:
                continue  # every map is zero: every value is 0
            if len(players) <= exact_up_to:
                weights[row, players] = exact_shapley(evidence, row, players)
            else:
                drawn = generator if generator is not None else row_generator(evidence, row, seed)
                weights[row, players], errors[row, players], counts[row] = sampled_shapley(
                    evidence, row, players, pairs, drawn, target_error)
    return weights, errors, counts
