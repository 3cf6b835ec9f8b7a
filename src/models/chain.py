"""The seed article's scalar chain: n layers, one scalar weight each, no activation, no bias.

a_l = w_l·a_(l-1), output = a_n. With every w_l = w and input x the forward activations are w^l·x, the
backward signals δ_l = ∂L/∂a_l = w^(n-l) (for ∂L/∂a_n = 1) and every weight gradient is w^(n-1)·x: only the
δ's form the geometric sequence 16, 8, 4, 2, 1 at w = 2, n = 5. (The seed's code listing prints its δ's
shifted by one layer — it reports w^(n-l+1) — this project reports δ_l = ∂L/∂a_l.)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ScalarChain(nn.Module):
    sequence_model = False

    def __init__(self, input_size: int = 1, output_size: int = 1, depth: int = 5, init_value: float = 2.0) -> None:
        super().__init__()
        if input_size != 1 or output_size != 1:
            raise ValueError("the scalar chain takes one input and gives one output (data=scalar)")
        self.layers = nn.ModuleList(nn.Linear(1, 1, bias=False) for _ in range(depth))
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.fill_(init_value)

    def forward(self, x: Tensor) -> Tensor:
        a = x.flatten(1)  # (B, 1)
        for layer in self.layers:
            a = layer(a)
        return a
