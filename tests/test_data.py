"""Task definitions against independent computations and their published trivial baselines."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from src.data import SyntheticDataModule, make_task
from src.data.copy_memory import BLANK, DELIMITER, N_COPY

CPU = torch.device("cpu")


def sample(name: str, n: int, seq_len: int, seed: int = 0):
    return make_task(name, seq_len).sample(n, torch.Generator().manual_seed(seed), CPU)


def test_adding_targets_and_markers():
    x, y = sample("adding", 4096, 50)
    values, marker = x[..., 0], x[..., 1]
    assert torch.equal(marker.sum(1), torch.full((4096,), 2.0))
    assert torch.equal(marker[:, :25].sum(1), torch.ones(4096))  # one marker in each half
    assert torch.allclose((values * marker).sum(1, keepdim=True), y)
    assert values.min() >= 0 and values.max() < 1


def test_adding_baseline_is_one_sixth():
    _, y = sample("adding", 400_000, 20)
    mse_predict_one = F.mse_loss(torch.ones_like(y), y).item()
    assert mse_predict_one == pytest.approx(1 / 6, abs=0.002)
    assert make_task("adding", 20).task.baseline == pytest.approx(0.16667, abs=1e-5)


@pytest.mark.parametrize("delay", [10, 100])
def test_copy_layout_and_memoryless_baseline(delay: int):
    x, y = sample("copy", 2000, delay)
    tokens = x.argmax(-1)
    assert x.shape == (2000, delay + 20, 10)
    assert torch.equal(y[:, -N_COPY:], tokens[:, :N_COPY])  # recall the 10 symbols in order
    assert (y[:, : delay + N_COPY] == BLANK).all()
    assert (tokens[:, N_COPY + delay - 1] == DELIMITER).all()
    assert tokens[:, :N_COPY].min() >= 1 and tokens[:, :N_COPY].max() <= 8
    # memoryless strategy: certain blank for T+10 steps, then uniform over the 8 symbols
    logp = torch.full((delay + 20, 9), -1e9)
    logp[: delay + N_COPY, BLANK] = 0.0
    logp[delay + N_COPY :, 1:] = -math.log(8)
    ce = F.cross_entropy(logp.expand(2000, -1, -1).reshape(-1, 9), y.reshape(-1)).item()
    expected = 10 * math.log(8) / (delay + 20)
    assert ce == pytest.approx(expected, rel=1e-6)
    assert make_task("copy", delay).task.baseline == pytest.approx(expected, rel=1e-12)
    if delay == 100:
        assert expected == pytest.approx(0.17329, abs=1e-5)  # papers-and-baselines table


def test_temporal_order_labels_follow_the_marked_symbols():
    x, y = sample("temporal_order", 4000, 60)
    tokens = x.argmax(-1)
    marked = tokens < 2  # A = 0, B = 1
    assert torch.equal(marked.sum(1), torch.full((4000,), 2))
    pos = marked.nonzero()[:, 1].view(4000, 2)
    assert ((pos[:, 0] >= 6) & (pos[:, 0] < 12)).all() and ((pos[:, 1] >= 30) & (pos[:, 1] < 36)).all()
    first, second = tokens.gather(1, pos).unbind(1)
    assert torch.equal(y, 2 * first + second)
    counts = torch.bincount(y, minlength=4) / 4000
    assert torch.allclose(counts, torch.full((4,), 0.25), atol=0.03)


def test_batches_are_seeded_per_rank_and_shardable():
    dm = SyntheticDataModule(task="adding", seq_len=10, batch_size=8, seed=3)
    a0, b0 = dm.draw_batch(CPU, rank=0)
    dm.batches_drawn = 0
    a0_again, _ = dm.draw_batch(CPU, rank=0)
    dm.batches_drawn = 0
    a1, b1 = dm.draw_batch(CPU, rank=1)
    assert torch.equal(a0, a0_again)
    assert not torch.equal(a0, a1)
    # one device with 2 shards draws exactly the global batch of 2 devices with 1 shard each
    both = SyntheticDataModule(task="adding", seq_len=10, batch_size=16, shards_per_device=2, seed=3)
    x, y = both.draw_batch(CPU, rank=0)
    assert torch.equal(x, torch.cat([a0, a1])) and torch.equal(y, torch.cat([b0, b1]))


def test_validation_set_is_fixed_across_run_seeds():
    a = SyntheticDataModule(task="copy", seq_len=10, seed=1, val_size=32)
    b = SyntheticDataModule(task="copy", seq_len=10, seed=2, val_size=32)
    a.setup(), b.setup()
    assert torch.equal(a._fixed["val"].tensors[0], b._fixed["val"].tensors[0])
    assert not torch.equal(a._fixed["val"].tensors[0], a._fixed["test"].tensors[0])
