"""The logging schedule every monitor shares: which optimizer steps are logged, their step number, how.

Lightning 2.6 (``LoggerConnector.should_update_logs`` and ``log_metrics``, ``training_epoch_loop.advance``):
after the batch that takes optimizer step b (0-based; ``trainer.global_step`` is b before the update and b + 1
after it), ``self.log`` values go to the loggers when (b + 1) % ``log_every_n_steps`` == 0 or
``trainer.should_stop``, at ``step=b`` (``_batches_that_stepped``, not yet incremented); accumulation
micro-batches that do not step log nothing (``fit_loop._should_accumulate()``). So ``train/loss`` appears at
steps n−1, 2n−1, ...

``Monitor`` logs on exactly those steps, with the same number b — the weights W_b the gradient was computed
at — so a step's loss and gradient telemetry share one row. It adds step 0, the gradient at initialisation
that experiments read (the seed's δ profile, the initialisation studies): Lightning logs nothing there, so
that row holds the monitors' numbers alone. A monitor with its own ``every_n_steps`` = k logs at 0, k−1,
2k−1, ... (each also a Lightning step when k is a multiple of ``log_every_n_steps``). Work a monitor does only
to log (hooks, weight copies, extra passes) runs only on those steps; ``should_stop`` is not known before a
step's update, so a monitor that must prepare at batch start skips the stop step.

Numbers stay on device between logging steps; ``emit`` moves a step's values to the host in one transfer and
hands plain floats to every logger, from rank 0 only (gradient metrics need no cross-rank reduction: under
DDP the gradients are already identical on every rank).
"""

from __future__ import annotations

import weakref
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from torch.optim import Optimizer
from typing_extensions import override

from src import steps


def check_interval(every_n_steps: int | None) -> int | None:
    """A callback's logging interval: None (the Trainer's ``log_every_n_steps``) or a positive step count."""
    if every_n_steps is not None and (isinstance(every_n_steps, bool) or every_n_steps < 1):
        raise ValueError(
            f"every_n_steps={every_n_steps} is not allowed; expected an integer >= 1, or null (the Trainer's "
            "log_every_n_steps)"
        )
    return every_n_steps


_SCALERS: weakref.WeakKeyDictionary[L.Trainer, tuple[Any, Any]] = weakref.WeakKeyDictionary()


def grad_scaler(trainer: L.Trainer) -> Any:
    """The enabled ``torch.amp.GradScaler`` of the trainer's precision plugin (``16-mixed``), else None; looked
    up once per plugin (the guard and the activation and scaler monitors ask on every step)."""
    plugin = trainer.precision_plugin
    cached = _SCALERS.get(trainer)
    if cached is not None and cached[0] is plugin:
        return cached[1]
    scaler = getattr(plugin, "scaler", None)
    scaler = scaler if scaler is not None and scaler.is_enabled() else None
    _SCALERS[trainer] = (plugin, scaler)
    return scaler


def loss_scale(trainer: L.Trainer) -> Tensor | None:
    """The GradScaler's current scale as its device tensor (``get_scale()`` would sync), or None."""
    scaler = grad_scaler(trainer)
    return None if scaler is None else getattr(scaler, "_scale", None)


def to_floats(metrics: Mapping[str, Tensor | float]) -> dict[str, float]:
    """One device-to-host copy for all tensor values (a single sync instead of one per metric)."""
    keys = [k for k, v in metrics.items() if isinstance(v, Tensor)]
    out = {k: float(v) for k, v in metrics.items() if not isinstance(v, Tensor)}
    if keys:
        values = torch.stack([metrics[k].detach().float().reshape(()) for k in keys]).cpu().tolist()
        out.update(zip(keys, values, strict=True))
    return out


def emit(trainer: L.Trainer, metrics: Mapping[str, Tensor | float], step: int) -> dict[str, float]:
    """Send ``metrics`` to every logger from rank 0; returns what was sent (empty on other ranks)."""
    if not metrics or not trainer.is_global_zero:
        return {}
    values = to_floats(metrics)
    for logger in trainer.loggers:
        logger.log_metrics(values, step=step)
    return values


class Monitor(Callback):
    """Base of the telemetry callbacks: the logging interval, the step convention and ``emit`` (see above).

    Args:
        every_n_steps: log every this many optimizer steps (at 0, k−1, 2k−1, ...); None (default) follows the
            Trainer's ``log_every_n_steps``, so the monitor logs on the rows of Lightning's own metrics.

    Raises:
        ValueError: ``every_n_steps`` < 1.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        self.every_n_steps = check_interval(every_n_steps)

    def interval(self, trainer: L.Trainer) -> int:
        return self.every_n_steps or trainer.log_every_n_steps

    def logs_at(self, trainer: L.Trainer, step: int) -> bool:
        """Optimizer step ``step`` is logged: 0, Lightning's (step + 1) % n == 0, or the step that stops."""
        every = self.interval(trainer)
        return every > 0 and (step == 0 or (step + 1) % every == 0 or trainer.should_stop)

    @staticmethod
    def upcoming_step(trainer: L.Trainer) -> int:
        """The step the current batch contributes to, in hooks up to the update (batch start .. clipping)."""
        return steps.upcoming_step(trainer)

    @staticmethod
    def step_taken(trainer: L.Trainer) -> int | None:
        """In ``on_train_batch_end``: the step this batch just took, or None for a micro-batch that did not."""
        return steps.step_taken(trainer)

    @staticmethod
    def on_logging_rank(trainer: L.Trainer) -> bool:
        """This process logs: rank 0 (read once per batch, ``src.steps``)."""
        return steps.is_rank_zero(trainer)

    def emit(self, trainer: L.Trainer, metrics: Mapping[str, Tensor | float], step: int) -> dict[str, float]:
        """``emit``: one host transfer, every logger, rank 0. (Not ``log``: Lightning sets every callback's
        ``log`` to the LightningModule's ``self.log`` when a fit starts.)"""
        return emit(trainer, metrics, step)


class ForwardRecorder(Monitor, ABC):
    """A Monitor that records inside a logging step's training forward and backward passes (every micro-batch
    of the step), and logs once the optimizer has stepped. Outside logging steps it has no hook at all.

    Recording runs from ``on_train_batch_start`` to ``on_after_backward`` of each micro-batch, so a later
    forward pass (validation, ThroughTimeMonitor's diagnostic pass) is not counted. Subclasses implement
    ``start`` (install hooks; False: nothing to record in this model), ``record(flag)``, ``stop`` (remove the
    hooks), ``collect`` (the step's metrics) and, if they need it, ``before_update``. Rank 0 only.

    Args:
        every_n_steps: logging interval in optimizer steps; None uses the Trainer's ``log_every_n_steps``.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        super().__init__(every_n_steps)
        self._active = False  # hooks installed for the logging step self._step
        self._stepped = False
        self._step = -1

    @abstractmethod
    def start(self, pl_module: L.LightningModule) -> bool:
        """Install the recording hooks on ``pl_module``; False when the model has nothing to record."""

    @abstractmethod
    def record(self, flag: bool) -> None:
        """Turn recording on (the step's training passes) or off (any other pass)."""

    @abstractmethod
    def stop(self) -> None:
        """Remove the hooks ``start`` installed."""

    @abstractmethod
    def collect(self) -> dict[str, Tensor | float]:
        """The logging step's metrics, from what was recorded."""

    def before_update(self, trainer: L.Trainer) -> None:
        """Called once the step's backward passes are done, before clipping and the update."""

    def _finish(self) -> None:
        if self._active:
            self.record(False)
            self.stop()
            self._active = False

    @override
    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = self.upcoming_step(trainer)  # the optimizer step this micro-batch contributes to
        if not self.logs_at(trainer, step) or not self.on_logging_rank(trainer):
            return
        if not self._active:
            if not self.start(pl_module):
                return
            self._active, self._step = True, step
        self.record(True)

    @override
    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._active:
            self.record(False)

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        if self._active:
            self._stepped = True
            self.before_update(trainer)

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._stepped:  # not a logging step, or still accumulating micro-batches of this step
            return
        self._stepped = False
        self._finish()
        self.emit(trainer, self.collect(), self._step)

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish()  # a run stopped in the middle of a logging step leaves no hook or flag behind
