"""Tiny networks with fixed weights whose activations, gradients and maps are worked out by hand
in their docstrings; shared by the tests of methods and targets."""

from __future__ import annotations

import torch
from torch import nn


class QuadraticHead(nn.Module):
    """x (1, 1, 2, 2) = [[1, 2], [3, 4]] → 1×1 conv with weights (1, −1), biases (0, 3) → ReLU:
        A¹ = [[1, 2], [3, 4]],  A² = ReLU(3 − x) = [[2, 1], [0, 0]]
    then y = Σ_ij A¹A² − 2 Σ_ij A¹ = 4 − 20 = −16, whose gradients are
        g¹ = A² − 2 = [[0, −1], [−2, −2]],  g² = A¹ = [[1, 2], [3, 4]].
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.relu = nn.ReLU()
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([0.0, 3.0]))

    def forward(self, x):
        a = self.relu(self.conv(x))
        return ((a[:, 0] * a[:, 1]).sum(dim=(1, 2)) - 2 * a[:, 0].sum(dim=(1, 2)))[:, None]


X = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)


class LinearHead(nn.Module):
    """The same A as above, then GAP → linear with W = [[1, −1], [0.5, 2]], b = (0, 1)."""

    def __init__(self):
        super().__init__()
        self.features = QuadraticHead()
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 2.0]]))
            self.fc.bias.copy_(torch.tensor([0.0, 1.0]))

    def forward(self, x):
        a = self.features.relu(self.features.conv(x))
        return self.fc(a.mean(dim=(2, 3)))
