"""Associative recall: K key-value pairs, then one of the keys; the answer is that key's value.

The task of Ba, Hinton, Mnih, Leibo & Ionescu (2016), "Using Fast Weights to Attend to the Recent Past" §4.1
("c9k8j3f1??c" -> 8): keys are K distinct letters of a 26-letter alphabet, values digits 0-9 drawn uniformly
with replacement, the query one of the K keys chosen uniformly. The answer has to be fetched by content —
which pair holds the query key — not from a fixed position (Arora et al. 2023, Zoology, ask several such
queries per sequence: MQAR). One change of layout: each pair is one step, its key and value one-hot side by
side, where Ba et al. spell key and value as two characters. Their interleaved layout needs a two-layer
previous-token circuit first, which the CPU-sized Transformers here did not form in 3000 steps (K = 4 and 8);
with one step per pair a 2-block Transformer solves K = 8 in about 800.

``seq_len`` is K, the number of pairs (2 <= K <= 26). The input has K + 1 steps over 37 channels: 26 key
channels, 10 value channels and a query flag; step K holds the query key and the flag. Output: one of the 10
values, from the last step; cross-entropy.

Trivial baseline: the best prediction that ignores the query. Given everything but the query, the answer is
the value of a uniformly chosen pair, so the best such prediction is the values' frequencies in the sequence,
p(v) = c_v/K, with expected cross-entropy E[ln(K/c)], where c − 1 ~ Binomial(K − 1, 1/10) counts the other
pairs sharing the answer's value. It is below the uniform guess ln 10 = 2.303: 1.649 at K = 8, 2.109 at K = 26.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from src.data.task import Task, TaskGenerator

N_KEYS, N_VALUES = 26, 10
QUERY = N_KEYS + N_VALUES  # channels: keys 0..25, values 26..35, the query flag 36
N_CHANNELS = QUERY + 1


def query_blind_baseline(pairs: int, n_values: int = N_VALUES) -> float:
    """E[ln(K/c)] with c − 1 ~ Binomial(K − 1, 1/n_values): cross-entropy of p(v) = c_v/K (see module doc)."""
    p = 1.0 / n_values
    return sum(
        math.comb(pairs - 1, j) * p**j * (1 - p) ** (pairs - 1 - j) * math.log(pairs / (j + 1)) for j in range(pairs)
    )


class AssociativeRecall(TaskGenerator):
    def __init__(self, seq_len: int) -> None:
        if not 1 <= seq_len <= N_KEYS:
            raise ValueError(f"recall needs 1 <= seq_len (key-value pairs) <= {N_KEYS}, got {seq_len}")
        self.pairs = seq_len
        self.task = Task(
            name="recall",
            input_size=N_CHANNELS,
            output_size=N_VALUES,
            seq_len=seq_len + 1,
            output="final",
            loss="cross_entropy",
            baseline=query_blind_baseline(seq_len),
            baseline_rule="predict the values' frequencies, ignoring the query (uniform guess: ln 10)",
        )

    def sample(self, n: int, generator: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor]:
        k = self.pairs
        # K distinct keys per row: the first K of a random permutation (argsort of uniforms, batched on device)
        keys = torch.rand(n, N_KEYS, generator=generator, device=device).argsort(dim=1)[:, :k]  # (B, K)
        values = torch.randint(0, N_VALUES, (n, k), generator=generator, device=device)  # (B, K)
        query = torch.randint(0, k, (n,), generator=generator, device=device)  # (B,) which pair is asked for
        rows = torch.arange(n, device=device)
        x = torch.zeros(n, k + 1, N_CHANNELS, device=device)  # (B, K+1, 37)
        x[:, :k] = F.one_hot(keys, N_CHANNELS).float() + F.one_hot(N_KEYS + values, N_CHANNELS).float()
        x[:, k] = F.one_hot(keys[rows, query], N_CHANNELS).float()
        x[:, k, QUERY] = 1.0
        return x, values[rows, query]  # target (B,) class ids 0..9
