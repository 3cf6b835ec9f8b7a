"""One logging schedule: the monitors log on Lightning's own logging steps (plus step 0), one csv row per step."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import lightning as L
import pytest
from hydra.utils import instantiate
from torch.utils._python_dispatch import TorchDispatchMode

from src.build import build_network
from src.callbacks import (
    ActivationMonitor,
    HistogramMonitor,
    Monitor,
    ThroughputLogger,
    ThroughTimeMonitor,
    WeightMonitor,
)
from src.loggers import StepRowWriter
from src.models import GradLabModule
from src.train import train
from tests.telemetry_helpers import MemoryLogger


def csv_rows(run_dir: str) -> list[dict[str, str]]:
    with (Path(run_dir) / "csv" / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_default_run_has_one_csv_row_per_logged_step(make_cfg):
    # the default run (callbacks, W&B + CSV loggers, log_every_n_steps=25) cut to 100 steps; an epoch is 50 steps
    cfg = make_cfg(
        "callbacks=default",
        "callbacks.progress_bar=null",
        "logger=wandb",
        "trainer.log_every_n_steps=25",
        "trainer.max_steps=100",
        "data.batches_per_epoch=50",
    )
    assert cfg.trainer.log_every_n_steps == 25
    train(cfg)
    rows = csv_rows(cfg.paths.output_dir)
    steps = [int(row["step"]) for row in rows]
    # step 0 (the gradient at initialisation), Lightning's steps 24, 49, 74, 99, and the final validation and
    # test, which Lightning logs after the 100th step
    assert steps == [0, 24, 49, 74, 99, 100]
    by_step = {int(row["step"]): {k: v for k, v in row.items() if v != ""} for row in rows}
    telemetry = ("grad/norm_total_preclip", "grad/layer/network.rnn", "weight/layer/network.head",
                 "update_ratio/layer/network.rnn", "act/std/network.rnn", "delta/layer/network.head")  # fmt: skip
    for step in (24, 49, 74, 99):  # train/loss on the row of the gradient norms
        assert {"train/loss", *telemetry, "throughput/steps_per_s"} <= set(by_step[step]), step
    assert set(telemetry) <= set(by_step[0]) and "train/loss" not in by_step[0]  # Lightning logs no step 0
    assert {"val/loss", "train/loss", "grad/norm_total_preclip"} <= set(by_step[49])  # validation merged in
    assert "time_grad/t=0" in by_step[0] and "grad/nonfinite/network.rnn" in by_step[0]  # every 500: step 0 only
    assert {"val/loss", "test/loss"} <= set(by_step[100])


@pytest.mark.parametrize(
    ("every", "interval", "logged"),
    [(None, 25, [0, 24, 49, 74, 99]), (None, 1, list(range(100))), (500, 25, [0]), (50, 25, [0, 49, 99])],
)
def test_the_logging_steps_are_lightnings(every, interval, logged):
    class Trainer:  # what Monitor.logs_at reads of a Trainer
        log_every_n_steps = interval
        should_stop = False

    monitor = Monitor(every)
    assert [s for s in range(100) if monitor.logs_at(Trainer(), s)] == logged  # type: ignore[arg-type]
    Trainer.should_stop = True  # the step on which something stops the run is logged, as Lightning logs it
    assert monitor.logs_at(Trainer(), 57)  # type: ignore[arg-type]


def test_rows_of_one_step_merge_in_the_buffer_and_in_the_file(tmp_path):
    writer = StepRowWriter(str(tmp_path))
    writer.log_metrics({"grad/a": 1.0}, 0)
    writer.log_metrics({"grad/a": 2.0}, 24)
    writer.log_metrics({"train/loss": 0.5}, 24)  # merged in the buffer
    writer.save()
    writer.log_metrics({"val/loss": 0.4}, 24)  # merged into the row already written, with a new column
    writer.save()
    writer.log_metrics({"grad/a": 3.0}, 49)
    writer.save()
    with (tmp_path / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [
        {"grad/a": "1.0", "step": "0", "train/loss": "", "val/loss": ""},
        {"grad/a": "2.0", "step": "24", "train/loss": "0.5", "val/loss": "0.4"},
        {"grad/a": "3.0", "step": "49", "train/loss": "", "val/loss": ""},
    ]


class CountOps(TorchDispatchMode):
    """Counts every ATen operator call, per optimizer step (set by ``StepOf``)."""

    def __init__(self) -> None:
        super().__init__()
        self.step = -1
        self.ops: Counter[int] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[self.step] += 1
        return func(*args, **(kwargs or {}))


class StepOf(L.Callback):
    def __init__(self, mode: CountOps) -> None:
        self.mode = mode

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.mode.step = trainer.global_step


def test_monitors_that_only_log_do_nothing_on_other_steps(make_cfg):
    # the same 8 steps with and without the monitors that act on logging steps only (every 4: steps 0, 3, 7):
    # every other step runs exactly the same tensor operations
    def ops_per_step(monitors: list[L.Callback]) -> Counter[int]:
        cfg = make_cfg("trainer.max_steps=8", "trainer.log_every_n_steps=4")
        dm = instantiate(cfg.data)
        module = GradLabModule(build_network(cfg.model, dm.task), dm.task, instantiate(cfg.optimizer))
        mode = CountOps()
        trainer = instantiate(cfg.trainer, logger=MemoryLogger(), callbacks=[StepOf(mode), *monitors])
        with mode:
            trainer.fit(module, datamodule=dm)
        return mode.ops

    quiet = ops_per_step([])
    monitors = [WeightMonitor(), ActivationMonitor(), HistogramMonitor(), ThroughTimeMonitor(), ThroughputLogger()]
    watched = ops_per_step(monitors)
    for step in range(8):
        if step in (0, 3, 7):
            assert watched[step] > quiet[step], step  # they did their work here
        else:
            assert watched[step] == quiet[step], step
