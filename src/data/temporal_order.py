"""Temporal order task (Hochreiter & Schmidhuber 1997 §5.6; layout of Pascanu, Mikolov & Bengio 2013 code,
tempOrder.py).

Six one-hot symbols: A, B and four distractors c, d, e, f. Every step shows a random distractor except two:
position p0 ~ U[0.1T, 0.2T) and p1 ~ U[0.5T, 0.6T) show A or B. Classify the order (AA, AB, BA, BB) from the
last step: 4 classes. Guessing gives cross-entropy ln 4 and accuracy 25%.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from src.data.task import Task, TaskGenerator

N_CHANNELS, N_CLASSES = 6, 4


class TemporalOrder(TaskGenerator):
    def __init__(self, seq_len: int) -> None:
        self.seq_len = seq_len
        self.task = Task(
            name="temporal_order",
            input_size=N_CHANNELS,
            output_size=N_CLASSES,
            seq_len=seq_len,
            output="final",
            loss="cross_entropy",
            baseline=math.log(N_CLASSES),
            baseline_rule="uniform guess over AA, AB, BA, BB (ln 4)",
        )

    def sample(self, n: int, generator: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor]:
        t = self.seq_len
        tokens = torch.randint(2, N_CHANNELS, (n, t), generator=generator, device=device)  # distractors
        lo0, hi0 = int(0.1 * t), max(int(0.2 * t), int(0.1 * t) + 1)
        lo1, hi1 = int(0.5 * t), max(int(0.6 * t), int(0.5 * t) + 1)
        p0 = torch.randint(lo0, hi0, (n,), generator=generator, device=device)
        p1 = torch.randint(lo1, hi1, (n,), generator=generator, device=device)
        first = torch.randint(0, 2, (n,), generator=generator, device=device)  # 0 = A, 1 = B
        second = torch.randint(0, 2, (n,), generator=generator, device=device)
        rows = torch.arange(n, device=device)
        tokens[rows, p0] = first
        tokens[rows, p1] = second
        x = F.one_hot(tokens, N_CHANNELS).float()  # (B, T, 6)
        return x, 2 * first + second  # class: AA=0, AB=1, BA=2, BB=3
