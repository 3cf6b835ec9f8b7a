"""DivergenceGuard: non-finite values and spikes in the gradient norm or the loss, handled as data.

Lightning trains on with NaN weights after a NaN loss (nothing calls its ``check_finite_loss``), and a NaN
in one gradient turns Lightning's norm clipping into NaN/0 everywhere. The guard checks every optimizer step
in ``on_before_optimizer_step`` — the pre-clip, all-reduced norms it shares with GradNormMonitor and the
step's loss (summed over accumulation micro-batches in ``on_before_backward``, unscaled under AMP) — for:

- ``nonfinite``: a NaN/inf total gradient norm or loss;
- ``spike``: after ``warmup_steps`` finite steps, a total norm above ``spike_factor`` × the median of the
  last ``window`` finite norms, or a loss above ``loss_spike_factor`` × the median of the recent losses.

Each event type has an action: ``warn`` (log and train on), ``skip`` (this optimizer step changes neither the
weights nor the optimizer state: every ``.grad`` is set to None, and torch optimizers leave parameters
without a gradient — and their state — untouched), ``stop`` (skip, then end training cleanly, recorded as
``diverged``). ``max_consecutive_skips`` skips in a row also stop the run as diverged.

Deciding needs the flags on the host: one small device-to-host copy per optimizer step (GradScaler does the
same for its inf check). Under DDP the decision is collective — every rank calls
``strategy.reduce_boolean_decision`` at the same hook on every step — so a NaN on one rank stops or skips
every rank at the same step instead of hanging the others.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from torch.optim import Optimizer
from typing_extensions import override

from src.callbacks.flight_recorder import FlightRecorder
from src.callbacks.grad_stats import pre_clip_grad_stats

log = logging.getLogger(__name__)
Action = Literal["warn", "skip", "stop"]
ACTIONS = ("warn", "skip", "stop")


class DivergenceGuard(Callback):
    def __init__(
        self,
        on_nonfinite: Action = "stop",
        on_spike: Action = "warn",
        spike_factor: float = 10.0,
        loss_spike_factor: float = 10.0,
        window: int = 50,
        warmup_steps: int = 20,
        max_consecutive_skips: int = 20,
        recorder_steps: int = 100,
        dirpath: str | None = None,
    ) -> None:
        for name, action in (("on_nonfinite", on_nonfinite), ("on_spike", on_spike)):
            if action not in ACTIONS:
                raise ValueError(f"{name}={action!r}: expected one of {ACTIONS}")
        if spike_factor <= 1 or loss_spike_factor <= 1 or window < 1 or warmup_steps < 1:
            raise ValueError("spike factors must be > 1, window and warmup_steps >= 1")
        self.on_nonfinite, self.on_spike = on_nonfinite, on_spike
        self.spike_factor, self.loss_spike_factor = spike_factor, loss_spike_factor
        self.window, self.warmup_steps = window, warmup_steps
        self.max_consecutive_skips = max_consecutive_skips
        self.dirpath = dirpath
        self.recorder = FlightRecorder(recorder_steps)
        self._loss: Tensor | None = None
        self._norms: Tensor | None = None  # (window,) recent finite total norms, NaN = empty slot
        self._losses: Tensor | None = None
        self._seen = 0  # finite steps recorded into the windows
        self.events: list[dict[str, Any]] = []
        self.skipped_steps = 0
        self._consecutive_skips = 0
        self.divergence: dict[str, Any] | None = None

    @property
    def diverged(self) -> bool:
        return self.divergence is not None

    @override
    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        value = loss.detach().float()
        if scaler is not None:  # the loss arrives scaled by GradScaler and divided by the accumulation factor
            value = value / scaler.get_scale()
        self._loss = value if self._loss is None else self._loss + value

    def _is_spike(self, value: Tensor, history: Tensor, factor: float) -> Tensor:
        if self._seen < self.warmup_steps:
            return torch.zeros((), dtype=torch.bool, device=value.device)
        return value > factor * torch.nanmedian(history)

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        stats = pre_clip_grad_stats(trainer, pl_module, optimizer)
        total = stats.total_norm
        loss = self._loss if self._loss is not None else torch.full_like(total, float("nan"))
        self._loss = None
        if self._norms is None or self._losses is None:
            self._norms = torch.full((self.window,), float("nan"), device=total.device)
            self._losses = torch.full((self.window,), float("nan"), device=total.device)
        flags = torch.stack(
            [
                ~torch.isfinite(total),
                ~torch.isfinite(loss),
                self._is_spike(total, self._norms, self.spike_factor),
                self._is_spike(loss, self._losses, self.loss_spike_factor),
            ]
        )
        self.recorder.record(stats.step, loss, stats)
        # the one host transfer per step: an any-rank decision needs a Python bool
        nonfinite_grad, nonfinite_loss, grad_spike, loss_spike = (bool(f) for f in flags.tolist())
        nonfinite = trainer.strategy.reduce_boolean_decision(nonfinite_grad or nonfinite_loss, all=False)
        spike = trainer.strategy.reduce_boolean_decision(grad_spike or loss_spike, all=False) and not nonfinite
        if not nonfinite and not spike:
            slot = self._seen % self.window
            self._norms[slot], self._losses[slot] = total, loss
            self._seen += 1
            self._consecutive_skips = 0
            return
        kind = "nonfinite" if nonfinite else "spike"
        if nonfinite:
            reason = (
                "nonfinite_grad" if nonfinite_grad else "nonfinite_loss" if nonfinite_loss else "nonfinite_other_rank"
            )
        else:
            reason = "grad_spike" if grad_spike else "loss_spike" if loss_spike else "spike_other_rank"
        action = self.on_nonfinite if nonfinite else self.on_spike
        self.events.append({"step": stats.step, "kind": kind, "reason": reason, "action": action})
        n = len(self.events)
        if n <= 3 or n % 50 == 0:  # every event is in self.events (and summary.json); the log stays readable
            more = "" if n <= 3 else f" ({n} events so far)"
            log.warning("divergence guard: %s at step %d (action: %s)%s", reason, stats.step, action, more)
        if action == "warn":
            if nonfinite and self.divergence is None:  # training goes on, but the run has diverged
                self._record_divergence(trainer, pl_module, stats.step, reason)
            return
        for p in pl_module.parameters():  # skip: torch optimizers leave gradient-less parameters untouched
            p.grad = None
        self.skipped_steps += 1
        self._consecutive_skips += 1
        too_many = self._consecutive_skips >= self.max_consecutive_skips
        if action == "stop" or too_many:
            reason = reason if action == "stop" else f"{reason} ({self._consecutive_skips} consecutive skips)"
            self._record_divergence(trainer, pl_module, stats.step, reason)
            trainer.should_stop = True  # the same decision on every rank: it came from a collective

    def _record_divergence(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int, reason: str) -> None:
        diagnosis = self.recorder.diagnose(step, reason)
        diagnosis["clip"] = trainer.gradient_clip_val
        diagnosis["clip_algorithm"] = trainer.gradient_clip_algorithm
        self.divergence = diagnosis
        if trainer.is_global_zero:
            out = Path(self.dirpath or trainer.default_root_dir)
            out.mkdir(parents=True, exist_ok=True)
            (out / "divergence.json").write_text(json.dumps(diagnosis, indent=2, default=str))

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.divergence, self.events, self._consecutive_skips, self._loss = None, [], 0, None

    @override
    def state_dict(self) -> dict[str, Any]:  # the spike windows continue after a resume
        return {"norms": self._norms, "losses": self._losses, "seen": self._seen, "skipped": self.skipped_steps}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._norms, self._losses = state_dict["norms"], state_dict["losses"]
        self._seen, self.skipped_steps = int(state_dict["seen"]), int(state_dict["skipped"])
