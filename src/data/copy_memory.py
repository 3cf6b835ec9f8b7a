"""Copy memory task, the layout of Arjovsky, Shah & Bengio (2016) §4.1 and their code (memory_problem.py).

Input of length T+20: 10 symbols drawn uniformly with replacement from {1..8}, then T-1 blanks (0), one
delimiter (9), then 10 blanks. Target: blank for the first T+10 steps, then the 10 symbols in order.
Cross-entropy averaged over all T+20 steps. The memoryless strategy (blank for T+10 steps, then uniform over
the 8 symbols) scores 10·ln(8)/(T+20) nats. Inputs are one-hot over 10 categories; outputs are 9 classes
(blank + 8 symbols). Accuracy is scored on the 10 recalled positions only (``answer_steps``): over all T+20
steps the memoryless strategy would already score (T+10+10/8)/(T+20), 0.875 at T = 50; on the recalled
positions it scores chance, 1/8. Other papers shift the output window by one step (Lezcano-Casado & Martínez-Rubio 2019)
or fill the tail with delimiters (Bai et al. 2018); the baseline is the same for all of them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from src.data.task import Task, TaskGenerator

N_SYMBOLS, N_COPY, BLANK, DELIMITER = 8, 10, 0, 9


class CopyMemory(TaskGenerator):
    def __init__(self, seq_len: int) -> None:
        self.seq_len = seq_len  # T: the delay between the last symbol shown and the first one recalled
        self.task = Task(
            name="copy",
            input_size=N_SYMBOLS + 2,
            output_size=N_SYMBOLS + 1,
            seq_len=seq_len + 2 * N_COPY,
            output="per_step",
            loss="cross_entropy",
            baseline=N_COPY * math.log(N_SYMBOLS) / (seq_len + 2 * N_COPY),
            baseline_rule="memoryless: blank, then uniform over the 8 symbols (10·ln8/(T+20))",
            answer_steps=N_COPY,
        )

    def sample(self, n: int, generator: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor]:
        t = self.seq_len
        symbols = torch.randint(1, N_SYMBOLS + 1, (n, N_COPY), generator=generator, device=device)
        tokens = torch.full((n, t + 2 * N_COPY), BLANK, dtype=torch.long, device=device)
        tokens[:, :N_COPY] = symbols
        tokens[:, N_COPY + t - 1] = DELIMITER
        target = torch.full_like(tokens, BLANK)
        target[:, -N_COPY:] = symbols
        x = F.one_hot(tokens, N_SYMBOLS + 2).float()  # (B, T+20, 10)
        return x, target  # target (B, T+20) class ids in 0..8
