"""Adding problem, the U(0,1) "one marker in each half" variant.

Hochreiter & Schmidhuber (1997) §5.4 introduced the task; this layout is Le, Jaitly & Hinton (2015) §4.1 as
specified by Arjovsky, Shah & Bengio (2016) §4.2: values x_t ~ U(0,1), a marker channel with exactly two 1s,
the first uniformly in the first half, the second uniformly in the second half; target = sum of the two
marked values. Always predicting 1 gives MSE = Var(X1 + X2) = 2/12 = 1/6 exactly (Arjovsky et al. round it
to 0.167; the 0.1767 quoted by Bai et al. 2018 is not the exact value).
"""

from __future__ import annotations

import torch
from torch import Tensor

from src.data.task import Task, TaskGenerator


class AddingProblem(TaskGenerator):
    def __init__(self, seq_len: int) -> None:
        self.seq_len = seq_len
        self.task = Task(
            name="adding",
            input_size=2,
            output_size=1,
            seq_len=seq_len,
            output="final",
            loss="mse",
            baseline=1.0 / 6.0,
            baseline_rule="always predict 1 (MSE = 1/6)",
        )

    def sample(self, n: int, generator: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor]:
        t, half = self.seq_len, self.seq_len // 2
        values = torch.rand(n, t, generator=generator, device=device)  # (B, T)
        first = torch.randint(0, half, (n,), generator=generator, device=device)
        second = torch.randint(half, t, (n,), generator=generator, device=device)
        marker = torch.zeros(n, t, device=device)
        rows = torch.arange(n, device=device)
        marker[rows, first] = 1.0
        marker[rows, second] = 1.0
        x = torch.stack([values, marker], dim=-1)  # (B, T, 2): channel 0 value, channel 1 marker
        y = (values[rows, first] + values[rows, second]).unsqueeze(-1)  # (B, 1)
        return x, y
