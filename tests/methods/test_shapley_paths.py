"""Shapley values of maps along both evaluation paths: the running sum after a linear head with an
affine tail, and materialized coalitions where the network after the layer mixes channels at
once — each against coalitions written out by hand."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import camlens
from camlens.engine.after import AfterLayer

from support import random_images


class TailNet(nn.Module):
    """K maps; after them a pointwise conv, batch-norm, a second pointwise conv and batch-norm
    (an affine tail), then ReLU, pooling and a linear layer."""

    def __init__(self, channels: int):
        super().__init__()
        torch.manual_seed(channels)
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.relu = nn.ReLU()
        self.mix = nn.Conv2d(channels, 5, 1)
        self.bn = nn.BatchNorm2d(5)
        self.widen = nn.Conv2d(5, 6, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 4 * 4, 3)
        for bn in (self.bn, self.bn2):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.data.uniform_(0.5, 2)
            bn.bias.data.uniform_(-1, 1)

    def after(self, activations):
        hidden = F.relu(self.bn2(self.widen(self.bn(self.mix(activations)))))
        return self.fc(F.avg_pool2d(hidden, 2).flatten(1))

    def forward(self, x):
        return self.after(self.relu(self.conv(x)))


class MixingNet(TailNet):
    """The same maps, but a 3×3 convolution mixes them right after the layer: no linear head."""

    def __init__(self, channels: int):
        super().__init__(channels)
        self.mix = nn.Conv2d(channels, 5, 3, padding=1)


def hand_values(model, activations, coalitions, cls):
    """v(S) for each coalition S of map indices: the maps in S kept, the others zero."""
    values = []
    with torch.no_grad():
        for coalition in coalitions:
            mask = torch.zeros(activations.shape[1], dtype=activations.dtype)
            mask[list(coalition)] = 1
            values.append(float(model.after(activations * mask[None, :, None, None])[0, cls]))
    return torch.tensor(values, dtype=torch.float64)


def hand_shapley(model, image, cls):
    activations = model.relu(model.conv(image)).detach()
    channels = activations.shape[1]
    coalitions = [c for size in range(channels + 1) for c in itertools.combinations(range(channels), size)]
    value = dict(zip(coalitions, hand_values(model, activations, coalitions, cls).tolist()))
    phi = []
    for k in range(channels):
        total = 0.0
        for coalition in coalitions:
            if k not in coalition:
                weight = math.factorial(len(coalition)) * math.factorial(channels - len(coalition) - 1) / math.factorial(channels)
                total += weight * (value[tuple(sorted(coalition + (k,)))] - value[coalition])
        phi.append(total)
    return torch.tensor(phi, dtype=torch.float64)


@pytest.mark.parametrize("build", [TailNet, MixingNet])
def test_exact_and_sampled_shapley_equal_the_definition(build):
    model = build(7).eval().double()
    image = random_images(1, 8, seed=2).double()
    exact = camlens.explain(model, image, layer="relu", methods="shapley")
    expected = hand_shapley(model, image, int(exact.targets[0]))
    torch.testing.assert_close(exact.weights["shapley"][0], expected, rtol=1e-9, atol=1e-10)
    sampled = camlens.explain(model, image, layer="relu", methods="shapley",
                              options={"shapley": {"exact_up_to": 0, "pairs": 150, "seed": 4}})
    estimate, error = sampled.weights["shapley"][0], sampled.errors["shapley"][0]
    assert ((estimate - expected).abs() <= 4 * error + 1e-9).all()


def test_a_running_sum_through_the_affine_tail_gives_every_coalition_of_an_order():
    model = TailNet(9).eval().double()
    image = random_images(1, 8, seed=3).double()
    activations = model.relu(model.conv(image)).detach()
    output = model(image).detach()
    after = AfterLayer(model, image, "relu", activations, output)
    assert after.has_linear_head and len(after._head.tail) == 3  # bn, widen, bn2: the tail it found
    players = torch.tensor([0, 2, 3, 5, 6, 8])
    assert after._coalition_basis(activations, torch.zeros(1, dtype=torch.long), players) is not None  # not the fallback
    orders = torch.stack([torch.randperm(6, generator=torch.Generator().manual_seed(s)) for s in range(3)])
    outputs = after.growing(activations, torch.zeros(1, dtype=torch.long), players, orders)  # (3 · 7, classes)
    coalitions = [players[order[:size]].tolist() for order in orders for size in range(7)]
    expected = torch.stack([hand_values(model, activations, coalitions, c) for c in range(3)], dim=1)
    torch.testing.assert_close(outputs, expected, rtol=1e-10, atol=1e-10)


def test_sampling_stops_at_the_target_standard_error():
    model = TailNet(12).eval()
    image = random_images(1, 8, seed=5)
    options = {"exact_up_to": 0, "pairs": 400, "seed": 1}
    full = camlens.explain(model, image, layer="relu", methods="shapley", options={"shapley": options})
    target = float(full.errors["shapley"].max()) * 3  # reached long before 400 pairs
    early = camlens.explain(model, image, layer="relu", methods="shapley",
                            options={"shapley": options | {"target_error": target}})
    assert float(early.errors["shapley"].max()) <= target
    assert float(early.errors["shapley"].min()) > float(full.errors["shapley"].min())  # it stopped: fewer pairs
    with pytest.raises(ValueError, match="target_error must be positive"):
        camlens.explain(model, image, layer="relu", methods="shapley", options={"shapley": {"target_error": 0}})


def test_an_images_sampled_values_do_not_depend_on_its_place_in_the_batch():
    model = TailNet(20).eval()
    images = random_images(2, 8, seed=7)
    options = {"shapley": {"exact_up_to": 0, "pairs": 6, "seed": 3}}
    alone = camlens.explain(model, images[1:], layer="relu", methods="shapley", options=options)
    second = camlens.explain(model, images, layer="relu", methods="shapley", options=options)
    # the same permutations: equal up to the last bits a batch may change in the activations
    torch.testing.assert_close(second.weights["shapley"][1], alone.weights["shapley"][0], rtol=1e-4, atol=1e-6)
    assert second.sample_counts["shapley"].tolist() == [6, 6]
    other_seed = camlens.explain(model, images[1:], layer="relu", methods="shapley",
                                 options={"shapley": options["shapley"] | {"seed": 4}})
    assert not torch.equal(other_seed.weights["shapley"], alone.weights["shapley"])
    # a generator of the user's own is drawn from as given: the same state, the same values
    drawn = [camlens.explain(model, images, layer="relu", methods="shapley",
                             options={"shapley": {"exact_up_to": 0, "pairs": 6,
                                                  "generator": torch.Generator().manual_seed(11)}})
             for _ in range(2)]
    torch.testing.assert_close(drawn[0].weights["shapley"], drawn[1].weights["shapley"], rtol=0, atol=0)


def test_progress_within_a_call_for_slow_methods(capfd):
    model = TailNet(12).eval()
    camlens.explain(model, random_images(1, 8), layer="relu", methods=("scorecam", "shapley"), progress=True,
                    options={"shapley": {"exact_up_to": 0, "pairs": 4}})
    err = capfd.readouterr().err
    assert "Score-CAM, row 0: masked images" in err and "Shapley, row 0: permutation pairs" in err
    camlens.explain(model, random_images(1, 8), layer="relu", methods="scorecam")
    assert "Score-CAM" not in capfd.readouterr().err  # silent unless asked
