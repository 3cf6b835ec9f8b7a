"""StepCSVLogger and StepWandbLogger: Lightning's CSV and W&B loggers with one row per step.

Lightning's CSV writer appends one row per ``log_metrics`` call, and a step is logged by several calls:
Lightning's own (``train/loss``, then ``val/*`` when validation runs after that step), and every monitor's
(src/callbacks/schedule.py logs on the same steps). Here a call for the step of the last row merges into that
row — still in the buffer, or already written, in which case the file is rewritten the way Lightning rewrites
it when new columns appear — so ``csv/metrics.csv`` reads as one table: a row per step, a column per metric.
Steps arrive in order (a resumed run continues after the last one), so only the last row can ever merge.

StepWandbLogger sends the calls of one step as one ``wandb.log``: every call costs W&B a hand-off to its
service thread, several per logging step (Lightning's own and each monitor's).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from typing import Any

from lightning.fabric.loggers.csv_logs import _ExperimentWriter
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.fabric.utilities.logger import _add_prefix
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from torch import Tensor
from typing_extensions import override


class StepRowWriter(ExperimentWriter):
    """Lightning's ``ExperimentWriter`` that merges the metrics of one step into one row.

    Args:
        log_dir: the directory of ``metrics.csv`` (and ``hparams.yaml``).
    """

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        self._written_last: dict[str, Any] | None = None  # the file's last row, as written
        self._merge_into_file = False  # the buffer's first row replaces the file's last row

    @override
    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        if self.metrics and step is not None and self.metrics[-1]["step"] == step:
            before = self.metrics.pop()
            super().log_metrics(metrics_dict, step)
            self.metrics[-1] = {**before, **self.metrics[-1]}
        elif not self.metrics and self._written_last is not None and self._written_last["step"] == step:
            super().log_metrics(metrics_dict, step)
            self.metrics[-1] = {**self._written_last, **self.metrics[-1]}
            self._merge_into_file = True
        else:
            super().log_metrics(metrics_dict, step)

    @override
    def save(self) -> None:
        if not self.metrics:
            return
        last = self.metrics[-1]
        if self._merge_into_file:
            self._record_new_keys()
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                rows = list(csv.DictReader(file))[:-1]
            with self._fs.open(self.metrics_file_path, "w", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(rows + self.metrics)
            self.metrics = []
            self._merge_into_file = False
        else:
            super().save()
        self._written_last = last


class StepCSVLogger(CSVLogger):
    """``lightning.pytorch.loggers.CSVLogger`` (same arguments) writing one row per step (``StepRowWriter``).

    It writes the file when ``flush_logs_every_n_steps`` rows are buffered, not (as Lightning's does) on every
    call whose step is a multiple of it: several calls log one step, and every call after the first one would
    then rewrite the whole file to merge its values into the row just written. Lightning's logger connector
    also saves after each of its own logging calls, and ``finalize`` writes what is left.
    """

    @override
    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Tensor | float], step: int | None = None) -> None:  # type: ignore[override]
        metrics = _add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR)
        writer = self.experiment
        writer.log_metrics(metrics, len(writer.metrics) if step is None else step)
        if len(writer.metrics) >= self._flush_logs_every_n_steps:
            self.save()

    @property
    @override
    @rank_zero_experiment
    def experiment(self) -> _ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = StepRowWriter(log_dir=self.log_dir)
        return self._experiment


class StepWandbLogger(WandbLogger):
    """``lightning.pytorch.loggers.WandbLogger`` (same arguments) sending one ``wandb.log`` per step.

    Calls for the same step are merged and sent when a call for another step arrives, at ``save`` (Lightning's
    logger connector calls it right after each of its own logging calls, so a logging step goes out at its
    end, validation's row after it) and at ``finalize``; the step's history row holds what the separate calls
    held, under the same ``trainer/global_step``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending: dict[str, Any] = {}
        self._pending_step: int | None = None

    @override
    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._pending and (step is None or step != self._pending_step):
            self._flush()
        if step is None:  # no step to merge on: as Lightning's
            super().log_metrics(metrics, step)
            return
        self._pending.update(metrics)
        self._pending_step = step

    def _flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, {}
            super().log_metrics(pending, self._pending_step)

    @override
    @rank_zero_only
    def save(self) -> None:
        self._flush()
        super().save()

    @override
    @rank_zero_only
    def finalize(self, status: str) -> None:
        self._flush()
        super().finalize(status)
