"""ThroughputLogger: optimizer steps/s and samples/s between logging steps, from the host clock only.

Lightning's own ThroughputMonitor needs a batch-size function and FLOP counts; this one measures wall time
between logging steps (no device sync: on GPU the figure settles to the true rate over a logging window, as
queued work must drain before the host gets far ahead) and multiplies by the global batch (per-device batch
× world size), so runs on different device counts compare in samples/s. Time spent in validation is left out.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from typing_extensions import override

from src.callbacks.schedule import Monitor


def _batch_size(batch: Any) -> int:
    first = batch[0] if isinstance(batch, list | tuple) else batch
    return int(first.shape[0]) if hasattr(first, "shape") else 1


class ThroughputLogger(Monitor):
    """On the logging steps of ``src.callbacks.schedule`` (from the second on: a rate needs a window) logs
    ``throughput/steps_per_s`` and ``throughput/samples_per_s`` (global batch: per-device batch × world size)
    over the optimizer steps since the previous logging step, validation time left out. Per step it only counts
    steps and samples on the host.

    Args:
        every_n_steps: logging interval in optimizer steps (< 1 raises ValueError); None uses the Trainer's
            ``log_every_n_steps``.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        super().__init__(every_n_steps)
        self._t0: float | None = None
        self._steps = 0
        self._samples = 0
        self._val_start: float | None = None

    @override
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_start = time.perf_counter()

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # validation inside a window would count as slow training: the window's clock skips it
        if self._t0 is not None and self._val_start is not None:
            self._t0 += time.perf_counter() - self._val_start
        self._val_start = None

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._samples += _batch_size(batch)  # this process's; × world size when logged
        step = self.step_taken(trainer)
        if step is None:  # mid-window micro-batch: no step yet
            return
        self._steps += 1
        if not self.logs_at(trainer, step):
            return
        now = time.perf_counter()
        if self._t0 is not None and now > self._t0:
            elapsed, samples = now - self._t0, self._samples * trainer.world_size
            rates = {"throughput/steps_per_s": self._steps / elapsed, "throughput/samples_per_s": samples / elapsed}
            self.emit(trainer, rates, step)
        self._t0, self._steps, self._samples = now, 0, 0
