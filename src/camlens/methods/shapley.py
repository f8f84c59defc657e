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
standard error of the mean over pairs.
"""

from __future__ import annotations

import math

import torch

from ..engine.after import chunks
from .evidence import Evidence

__all__ = ["shapley_weights", "exact_shapley", "sampled_shapley"]


def _coalition_values(evidence: Evidence, row: int, masks: torch.Tensor, players: torch.Tensor) -> torch.Tensor:
    """v(S) for coalitions of ``players`` (indices of maps) given as boolean masks (M, len(players)),
    evaluated in chunks; every other map is zero in every coalition."""
    activations = evidence.activations[row]
    values = activations.new_empty(masks.shape[0])
    for part in chunks(masks.shape[0], evidence.batch_size):
        kept = masks.new_zeros(masks[part].shape[0], activations.shape[0])
        kept[:, players] = masks[part]
        chosen = kept.to(activations.dtype)[:, :, None, None] * activations
        rows = torch.full((chosen.shape[0],), row, device=activations.device)
        values[part] = evidence.values(chosen, rows)
    return values


def exact_shapley(evidence: Evidence, row: int, players: torch.Tensor) -> torch.Tensor:
    """All :math:`2^{K'}` coalitions of one row's ``players`` (K' of them; 20 or so is
    practical): their Shapley values (K',)."""
    channels = len(players)
    device = evidence.activations.device
    coalitions = torch.arange(2**channels, device=device)
    masks = (coalitions[:, None] >> torch.arange(channels, device=device)) & 1
    values = _coalition_values(evidence, row, masks.bool(), players).double()
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


def sampled_shapley(evidence: Evidence, row: int, players: torch.Tensor, pairs: int,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Permutation sampling of one row's ``players`` with antithetic pairs: the estimate and its
    standard error (K',)."""
    channels = len(players)
    device = evidence.activations.device
    steps = torch.arange(channels + 1, device=device)[:, None]
    estimates = []
    for _ in range(pairs):
        order = torch.randperm(channels, generator=generator).to(device)
        pair = []
        for permutation in (order, order.flip(0)):
            position = torch.empty_like(permutation)
            position[permutation] = torch.arange(channels, device=device)
            masks = position[None, :] < steps  # (K + 1, K): the first j maps of the permutation
            values = _coalition_values(evidence, row, masks, players).double()
            contribution = torch.empty(channels, dtype=torch.float64, device=device)
            contribution[permutation] = values[1:] - values[:-1]
            pair.append(contribution)
        estimates.append((pair[0] + pair[1]) / 2)
    samples = torch.stack(estimates)
    mean = samples.mean(dim=0)
    error = samples.std(dim=0, unbiased=True) / math.sqrt(pairs) if pairs > 1 else torch.full_like(mean, float("inf"))
    dtype = evidence.activations.dtype
    return mean.to(dtype), error.to(dtype)


def shapley_weights(evidence: Evidence, exact_up_to: int = 16, pairs: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Shapley values of every row's maps (N, K) and their standard errors (0 when exact).

    Null players (maps zero everywhere) get 0, exactly; among the K' others, exact when
    K' ≤ ``exact_up_to``, otherwise ``pairs`` antithetic pairs of permutations, seeded.
    """
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1, not {pairs}")
    rows_count, channels = evidence.activations.shape[:2]
    weights = evidence.activations.new_zeros(rows_count, channels)
    errors = torch.zeros_like(weights)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with torch.inference_mode():
        for row in range(rows_count):
            players = evidence.activations[row].flatten(1).ne(0).any(dim=1).nonzero().flatten()
            if len(players) == 0:
                continue  # every map is zero: every value is 0
            if len(players) <= exact_up_to:
                weights[row, players] = exact_shapley(evidence, row, players)
            else:
                weights[row, players], errors[row, players] = sampled_shapley(evidence, row, players, pairs, generator)
    return weights, errors
