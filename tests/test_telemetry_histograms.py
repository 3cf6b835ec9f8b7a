"""Histograms: non-finite values counted, never dropped; TensorBoard and W&B (offline) receive them."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader

from src.callbacks import HistogramMonitor
from src.callbacks.histograms import finite_histograms
from src.train import train
from tests.telemetry_helpers import MemoryLogger
from tests.test_telemetry_steps import Regressor, dataset
from tests.wandb_runs import offline_run


def test_finite_histograms_count_what_they_cannot_bin():
    nan, inf = float("nan"), float("inf")
    poisoned = torch.tensor([nan, inf, -inf, 0.0, 1.0, 1.0, 3.0])
    empty = torch.tensor([nan, inf])
    constant = torch.full((5,), 2.0)
    h, e, c = finite_histograms([[poisoned], [empty], [constant[:2], constant[2:]]], bins=3)
    assert h.nonfinite == 3 and h.counts == [1.0, 2.0, 1.0] and h.edges == [0.0, 1.0, 2.0, 3.0]
    assert (h.num, h.total, h.total_sq) == (4, 5.0, 11.0)
    assert e.nonfinite == 2 and sum(e.counts) == 0 and e.num == 0
    assert c.nonfinite == 0 and sum(c.counts) == 5 and c.edges[0] < 2.0 < c.edges[-1]


class Poison(L.Callback):
    """A NaN and an inf in the first layer's gradient at step 0, before the monitors read it."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step == 0:
            grad = pl_module.net[0].weight.grad.view(-1)
            grad[0], grad[1] = float("nan"), float("inf")


def test_tensorboard_histograms_and_nonfinite_counts(tmp_path: Path):
    tensorboard = TensorBoardLogger(tmp_path, name="tb")
    memory = MemoryLogger()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=[tensorboard, memory],
        callbacks=[Poison(), HistogramMonitor(every_n_steps=1, bins=16)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Regressor(), DataLoader(dataset(), batch_size=8))
    numel = 16 * 6 + 16  # weight and bias of the first Linear
    first, second = memory.steps[0], memory.steps[1]
    assert first["grad/nonfinite/net.0"] == 2 and first["grad/nonfinite/net.2"] == 0
    assert first["weight/nonfinite/net.0"] == 0
    # SGD wrote the NaN and the inf into two weights; the next forward pass made every gradient NaN
    assert second["weight/nonfinite/net.0"] == 2 and second["weight/nonfinite/net.2"] == 0
    assert second["grad/nonfinite/net.0"] == numel and second["grad/nonfinite/net.4"] == 16 + 1
    events = EventAccumulator(tensorboard.log_dir, size_guidance={"histograms": 0})
    events.Reload()
    assert {"grad_hist/net.0", "weight_hist/net.4"} <= set(events.Tags()["histograms"])
    grad0 = {e.step: e.histogram_value for e in events.Histograms("grad_hist/net.0")}
    assert sorted(grad0) == [0]  # step 1 had no finite gradient to bin: only its count was logged
    assert grad0[0].num == numel - 2 and sum(grad0[0].bucket) == numel - 2
    assert math.isfinite(grad0[0].min) and math.isfinite(grad0[0].max)
    weight0 = {e.step: e.histogram_value for e in events.Histograms("weight_hist/net.0")}
    assert weight0[1].num == numel - 2


def test_wandb_offline_run_gets_histograms_and_the_through_time_chart(make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = make_cfg(
        "logger=wandb",
        "model=rnn",
        "callbacks=default",
        "callbacks.progress_bar=null",
        "callbacks.histograms.every_n_steps=10",
        "callbacks.through_time.every_n_steps=10",
    )
    train(cfg)
    (run_dir,) = Path(cfg.paths.output_dir, "wandb").glob("offline-run-*")
    keys = offline_run(run_dir)["history_keys"]
    # media values are stored as nested records (<key>.<field> in wandb's rendering: _type, bins, values)
    assert {"grad_hist/network.rnn.bins", "weight_hist/network.head.values"} <= keys  # one layer per module
    assert "grad/norm_total_preclip" in keys
    assert {"time_grad/t=0", "rnn/sigma_max/network.rnn.weight_hh_l0", "delta/layer/network.rnn"} <= keys
    assert "time_grad/profile_table._type" in keys  # the line chart's table
    # one chart at the end of training, one line per logged step of through_time.csv: log10 of its profile
    (table,) = run_dir.glob("files/media/table/time_grad/profile_table_*.table.json")
    data = json.loads(table.read_text())
    assert data["columns"] == ["step", "lineKey", "lineVal"]
    with next(Path(cfg.paths.output_dir).rglob("through_time.csv")).open() as f:
        rows = list(csv.DictReader(f))
    assert {int(r["step"]) for r in rows} == {0, 9, 19}  # 20 steps, every 10th logged: 0, 9, 19
    expected = [[int(r["t"]), f"step {r['step']}", math.log10(float(r["grad_norm"]))] for r in rows]
    assert [row[:2] for row in data["data"]] == [row[:2] for row in expected]
    assert [row[2] for row in data["data"]] == pytest.approx([row[2] for row in expected], rel=1e-6)


@pytest.mark.parametrize("bins", [0, -1])
def test_bins_must_be_positive(bins):
    with pytest.raises(ValueError, match="bins"):
        HistogramMonitor(bins=bins)
