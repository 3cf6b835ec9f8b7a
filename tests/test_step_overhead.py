"""What a step costs gradlab besides the math: which callbacks a run builds, and train/loss logged only where
Lightning writes it (the values still right)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
import torch

from src.build import build
from src.callbacks import AttentionMonitor, GradNormMonitor, GradScalerMonitor


def _types(cfg) -> set[type]:
    return {type(c) for c in build(cfg).callbacks}


def test_a_run_leaves_out_monitors_that_can_record_nothing(make_cfg):
    default = ["callbacks=default", "logger=none", "trainer.enable_progress_bar=false"]
    rnn = _types(make_cfg(*default, "model=rnn"))
    assert GradNormMonitor in rnn and AttentionMonitor not in rnn and GradScalerMonitor not in rnn
    assert AttentionMonitor in _types(make_cfg(*default, "model=transformer"))  # it has attention to record
    assert GradScalerMonitor in _types(make_cfg(*default, "model=rnn", "trainer.precision=16-mixed"))


class _LossProbe(L.Callback):
    """Every optimizer step's training loss, as training_step returned it."""

    def __init__(self) -> None:
        self.losses: dict[int, float] = {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int) -> None:
        self.losses[trainer.global_step - 1] = float(outputs["loss"])


def test_train_loss_is_logged_on_lightnings_steps_and_the_last_one(make_cfg):
    cfg = make_cfg("model=rnn", "model.hidden_size=8", "logger=csv", "trainer.max_steps=12", "test=false")
    cfg.trainer.log_every_n_steps = 5
    parts = build(cfg)
    probe = _LossProbe()
    parts.trainer.callbacks.append(probe)
    parts.trainer.fit(parts.module, datamodule=parts.datamodule)
    with open(Path(parts.loggers[0].log_dir) / "metrics.csv", newline="") as file:
        logged = {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(file) if r.get("train/loss")}
    assert sorted(logged) == [4, 9]  # (b + 1) % 5 == 0; the run's last step 11 is not one
    for step, value in logged.items():
        assert value == torch.tensor(probe.losses[step]).item()  # that step's loss
    # callback_metrics (read into summary.json) hold the loss of the last step all the same
    assert float(parts.trainer.callback_metrics["train/loss"]) == probe.losses[11]
