"""The seed article's worked example: input x = 1 into a chain of scalar weights, loss = the output itself.

"Assume δ₅ = 1.0 at the output": with L = output, ∂L/∂output = 1, so the backward signal at layer l of a
chain with all weights w is w^(n-l) and every weight gradient is w^(n-1)·x. The loss is unbounded below;
training on it is only for watching one SGD step (the seed: lr 0.1 moves W₁ by 1.6, 80% of 2.0).
"""

from __future__ import annotations

import torch
from torch import Tensor

from src.data.task import Task, TaskGenerator


class ScalarSignal(TaskGenerator):
    def __init__(self, x: float = 1.0) -> None:
        self.x = x
        self.task = Task(
            name="scalar",
            input_size=1,
            output_size=1,
            seq_len=1,
            output="none",
            loss="output",
            baseline=float("nan"),
            baseline_rule="none (the loss is the network output)",
        )

    def sample(self, n: int, generator: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor]:
        x = torch.full((n, 1), self.x, device=device)
        return x, torch.zeros(n, 1, device=device)
