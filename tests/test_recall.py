"""Associative recall: the layout of Ba et al. (2016) and its query-blind baseline, exactly and by Monte Carlo."""

from __future__ import annotations

import math

import pytest
import torch

from src.data import make_task
from src.data.recall import N_KEYS, N_VALUES, QUERY, query_blind_baseline
from src.train import train


def sample(n: int, pairs: int, seed: int = 0):
    return make_task("recall", pairs).sample(n, torch.Generator().manual_seed(seed), torch.device("cpu"))


def test_layout_and_answer():
    x, y = sample(3000, 8)
    assert x.shape == (3000, 9, N_KEYS + N_VALUES + 1)
    assert torch.equal(x[:, :8].sum(-1), torch.full((3000, 8), 2.0))  # a pair: one key and one value
    assert torch.equal(x[:, 8].sum(-1), torch.full((3000,), 2.0)) and (x[:, 8, QUERY] == 1).all()
    assert (x[:, :8, QUERY] == 0).all() and (x[:, 8, N_KEYS:QUERY] == 0).all()  # the query shows no value
    keys, values = x[:, :8, :N_KEYS].argmax(-1), x[:, :8, N_KEYS:QUERY].argmax(-1)  # (B, 8)
    query = x[:, 8, :N_KEYS].argmax(-1)  # (B,)
    assert all(len(set(row.tolist())) == 8 for row in keys)  # distinct keys: the answer is unambiguous
    for row in range(3000):
        (where,) = (keys[row] == query[row]).nonzero()[0]  # the query is one of the keys ...
        assert y[row] == values[row, where]  # ... and the answer is its value
    # the query picks each of the 8 pairs about equally often: no position is special
    picked = (keys == query.unsqueeze(1)).float().argmax(1)
    assert torch.bincount(picked, minlength=8).min() > 3000 / 8 * 0.8


def test_query_blind_baseline_exact_and_by_monte_carlo():
    # exact: K = 2, c − 1 ~ Bernoulli(1/10): 0.9·ln 2 + 0.1·ln 1
    assert query_blind_baseline(2) == pytest.approx(0.9 * math.log(2), rel=1e-12)
    assert make_task("recall", 8).task.baseline == pytest.approx(1.64910, abs=1e-5)
    assert query_blind_baseline(8) < math.log(N_VALUES)  # beats the uniform guess without reading the query
    # Monte Carlo: cross-entropy of p(v) = (count of v among the K values) / K
    for pairs in (4, 8):
        x, y = sample(50_000, pairs, seed=1)
        values = x[:, :pairs, N_KEYS:QUERY].argmax(-1)  # (B, K)
        counts = (values == y.unsqueeze(1)).sum(1).float()  # c >= 1: the answer's own pair counts
        ce = torch.log(pairs / counts).mean().item()
        assert ce == pytest.approx(query_blind_baseline(pairs), abs=0.008)  # 4 standard errors


def test_recurrent_and_feed_forward_models_accept_recall(make_cfg):
    for model in ("lstm", "mlp"):
        summary = train(make_cfg(f"model={model}", "data=recall", "data.seq_len=4", "trainer.max_steps=3"))
        assert summary["status"] == "completed" and summary["task"] == "recall"
        assert summary["baseline"] == pytest.approx(query_blind_baseline(4))
        assert "val/acc" in summary["metrics"]  # a classification task: the accuracy path applies
