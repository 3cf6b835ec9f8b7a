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
import time
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
    """``lightning.pytorch.loggers.CSVLogger`` writing one row per step (``StepRowWriter``), in batches.

    Args:
        flush_secs: also write the buffered rows once this many seconds have passed since the last write (as
            TensorBoard's ``flush_secs``), so the file a user follows is never older than that.
        *args, **kwargs: CSVLogger's (``save_dir``, ``name``, ``version``, ``flush_logs_every_n_steps``, ...).

    Raises:
        ValueError: ``flush_secs`` < 0.

    The file is written when ``flush_logs_every_n_steps`` rows are buffered or ``flush_secs`` have passed,
    and by ``finalize`` (the end of a fit or test, an interrupted run included). Lightning's own writes on
    every call whose step is a multiple of ``flush_logs_every_n_steps`` — several calls log one step here, and
    each after the first would rewrite the file to merge into the row just written — and its logger connector
    calls ``save`` after each of its logging calls, which would open the file and rewrite hparams.yaml on every
    logging step; here those calls write only when one of the two limits is reached.
    """

    def __init__(self, *args: Any, flush_secs: float = 10.0, **kwargs: Any) -> None:
        if flush_secs < 0:
            raise ValueError(f"flush_secs={flush_secs} is not allowed; expected a number of seconds >= 0")
        super().__init__(*args, **kwargs)
        self.flush_secs = flush_secs
        self._last_write = time.monotonic()

    @override
    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Tensor | float], step: int | None = None) -> None:  # type: ignore[override]
        metrics = _add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR)
        writer = self.experiment
        writer.log_metrics(metrics, len(writer.metrics) if step is None else step)
        self.save()

    @override
    @rank_zero_only
    def save(self) -> None:
        """Write the buffered rows if ``flush_logs_every_n_steps`` of them are waiting or ``flush_secs`` passed."""
        if self._experiment is None:
            return
        due = time.monotonic() - self._last_write >= self.flush_secs
        if due or len(self._experiment.metrics) >= self._flush_logs_every_n_steps:
            self._write()

    @override
    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self._write()

    def _write(self) -> None:
        super().save()
        self._last_write = time.monotonic()

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
