"""DivergenceGuard: non-finite values and spikes in the gradient norm or the loss, handled as data.

Lightning trains on with NaN weights after a NaN loss (nothing calls its ``check_finite_loss``), and a NaN
in one gradient turns Lightning's norm clipping into NaN/0 everywhere. The guard checks every optimizer step
in ``on_before_optimizer_step`` — the pre-clip, all-reduced norms it shares with GradNormMonitor, and the
step's loss — for:

- ``nonfinite``: a NaN/inf loss or total gradient norm;
- ``spike``: after ``warmup_steps`` finite steps, a total norm above ``spike_factor`` × the median of the
  last ``window`` finite norms, or a loss above ``loss_spike_factor`` × the median of the recent losses
  (a multiple of a running median: one bad step cannot drag the reference up the way it drags a mean;
  judged only while that median is positive).

The loss is taken in ``on_before_backward``, the only hook that sees it for every micro-batch before the
update: ``on_train_batch_end``/``outputs`` come after the optimizer step, too late to skip it, and
``callback_metrics`` holds only what the module chose to log. Micro-batch losses (already divided by the
accumulation factor by Lightning) are summed into the step's loss; under a GradScaler the scale is divided
out on device.

Each event type has an action: ``warn`` (log and train on), ``skip`` (this optimizer step changes neither the
weights nor the optimizer state: the ``.grad`` of every parameter the optimizer holds is set to None, and
torch optimizers pass over gradient-less parameters — no update, no weight decay, no moment or step-count
change; the LR scheduler still advances), ``stop`` (skip, then end training cleanly, recorded as
``diverged``; every later step is skipped too, since Lightning honours ``should_stop`` only once
``min_steps``/``min_epochs`` are met). ``max_consecutive_skips`` skips in a row also stop the run.

Under 16-mixed precision a non-finite gradient with a finite loss is GradScaler's overflow: the scaler skips
that step itself and lowers its scale, so the guard leaves it alone unless ``max_consecutive_skips``
overflows come in a row (the scale has then fallen by 2^max_consecutive_skips: the gradients are genuinely
non-finite).

Deciding needs the values on the host: one device-to-host copy of two floats (the total norm and the loss)
per optimizer step, after which the checks, the windows and their medians are host arithmetic of a few
microseconds, cheaper than the device kernels they replace on a small network (GradScaler pays the same sync
for its inf check; measured by ``scripts/bench.py guard``). Under DDP the decision
is collective — every rank calls ``strategy.reduce_boolean_decision`` at the same hook on every step (one
all-reduce; a second one only on steps with an event) — so a NaN on one rank skips or stops every rank at
the same step instead of hanging the others.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from torch.optim import Optimizer
from typing_extensions import override

from src.callbacks.flight_recorder import FlightRecorder
from src.callbacks.schedule import grad_scaler, loss_scale
from src.grad_norms import GradStats, step_grad_norms

log = logging.getLogger(__name__)


class Window:
    """The last ``size`` values, oldest first, kept sorted beside: the median is one index, not a sort a step.

    Args:
        size: how many values it keeps.
    """

    def __init__(self, size: int) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._sorted: list[float] = []

    def append(self, value: float) -> None:
        if len(self._values) == self._values.maxlen:
            del self._sorted[bisect.bisect_left(self._sorted, self._values[0])]
        self._values.append(value)
        bisect.insort(self._sorted, value)

    def extend(self, values: Iterable[float]) -> None:
        for value in values:
            self.append(value)

    def clear(self) -> None:
        self._values.clear()
        self._sorted.clear()

    def median(self) -> float:
        """The lower median (``torch.median``'s), NaN for no values."""
        return self._sorted[(len(self._sorted) - 1) // 2] if self._sorted else math.nan

    def __iter__(self) -> Iterator[float]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


Action = Literal["warn", "skip", "stop"]
ACTIONS = ("warn", "skip", "stop")


class Flags(NamedTuple):
    """This rank's checks of one optimizer step, on the host."""

    nonfinite_grad: bool
    nonfinite_loss: bool
    grad_spike: bool
    loss_spike: bool


class Event(NamedTuple):
    """What the guard decided about one optimizer step (the same on every rank)."""

    kind: str  # nonfinite | spike
    reason: str  # nonfinite_loss, nonfinite_grad, amp_overflow (...), grad_spike, loss_spike, ..._other_rank
    action: Action


class DivergenceGuard(Callback):
    """Checks every optimizer step for non-finite values and spikes and warns, skips the step or stops the run.

    Args:
        on_nonfinite: action on a NaN/inf loss or total gradient norm: ``warn`` | ``skip`` | ``stop`` (stop =
            skip this step and every later one, end the run as ``diverged``).
        on_spike: action on a spike: ``warn`` | ``skip`` | ``stop``.
        spike_factor: a gradient spike is a total norm above this × the median of the recent window (> 1).
        loss_spike_factor: a loss spike is a loss above this × the median of the recent losses (> 1).
        window: recent finite steps the medians are taken over.
        warmup_steps: no spike decisions before this many finite steps.
        max_consecutive_skips: this many skipped steps (or 16-mixed overflows) in a row end the run as diverged.
        recorder_steps: flight recorder length (the history in ``divergence.json``).
        dirpath: where ``divergence.json`` goes; None for the trainer's ``default_root_dir``.

    Raises:
        ValueError: an unknown action, a factor <= 1 or a count < 1.

    ``run_totals()`` hands the guard's record (events, skips, the divergence) to the run summary.
    """

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
                raise ValueError(f"{name}={action} is not allowed; expected one of: {', '.join(ACTIONS)}")
        for name, factor in (("spike_factor", spike_factor), ("loss_spike_factor", loss_spike_factor)):
            if not factor > 1:
                raise ValueError(f"{name}={factor} is not allowed; expected a number > 1")
        counts = {"window": window, "warmup_steps": warmup_steps, "max_consecutive_skips": max_consecutive_skips}
        for name, count in {**counts, "recorder_steps": recorder_steps}.items():
            if count < 1:
                raise ValueError(f"{name}={count} is not allowed; expected an integer >= 1")
        self.on_nonfinite, self.on_spike = on_nonfinite, on_spike
        self.spike_factor, self.loss_spike_factor = spike_factor, loss_spike_factor
        self.window, self.warmup_steps = window, warmup_steps
        self.max_consecutive_skips = max_consecutive_skips
        self.dirpath = dirpath
        self.recorder = FlightRecorder(recorder_steps)
        self._loss: Tensor | None = None
        self._norms = Window(window)  # the total norms of the last finite steps
        self._losses = Window(window)  # their losses
        self._seen = 0  # finite steps recorded into the windows
        self.events: list[dict[str, Any]] = []
        self.skipped_steps = 0
        self._consecutive_skips = 0
        self._consecutive_overflows = 0
        self._stopped = False
        self.divergence: dict[str, Any] | None = None

    @property
    def diverged(self) -> bool:
        return self.divergence is not None

    @override
    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        value = loss.detach().float()
        scale = loss_scale(trainer)
        if scale is not None:
            value = value / scale.to(value.device)
        self._loss = value if self._loss is None else self._loss + value

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        if self._stopped:  # a stop is final even while Lightning waits for min_steps/min_epochs
            self._loss = None
            self._skip(optimizer)
            trainer.should_stop = True
            return
        stats = step_grad_norms(trainer, pl_module)
        total, loss = self._step_values(stats.total_norm)
        self.recorder.record(stats.step, loss, total, stats)
        flags = self._check(total, loss)
        overflow = self._count_overflow(trainer, flags)
        event = self._decide(trainer, flags, overflow)
        if event is None:
            if not overflow:
                self._remember(total, loss)
            return
        self._log_event(stats.step, event, self._spike_ratio(event, total, loss))
        self._act(trainer, optimizer, stats, event)

    def _step_values(self, total: Tensor) -> tuple[float, float]:
        """(total norm, loss) on the host, the step's one transfer; the loss summed over its micro-batches (NaN
        if no backward was seen). The next step starts afresh."""
        loss = self._loss if self._loss is not None else torch.full_like(total, float("nan"))
        self._loss = None
        if total.is_cpu and loss.is_cpu:  # nothing to transfer: read them directly
            return total.item(), loss.item()
        norm_value, loss_value = torch.stack([total.float(), loss.float().reshape(())]).tolist()
        return norm_value, loss_value

    def _check(self, total: float, loss: float) -> Flags:
        """The four checks, on the host floats of this step."""
        nonfinite_grad, nonfinite_loss = not math.isfinite(total), not math.isfinite(loss)
        if self._seen < self.warmup_steps:
            return Flags(nonfinite_grad, nonfinite_loss, False, False)
        # a multiple of a median means something only above 0: a negative loss (e.g. a Gaussian NLL) or an
        # all-zero gradient history would otherwise make every step a spike
        norm_median, loss_median = self._norms.median(), self._losses.median()
        grad_spike = norm_median > 0 and total > self.spike_factor * norm_median
        loss_spike = loss_median > 0 and loss > self.loss_spike_factor * loss_median
        return Flags(nonfinite_grad, nonfinite_loss, grad_spike, loss_spike)

    def _count_overflow(self, trainer: L.Trainer, flags: Flags) -> bool:
        """A GradScaler overflow (non-finite gradient, finite loss, 16-mixed): the scaler skips it itself."""
        overflow = flags.nonfinite_grad and not flags.nonfinite_loss and grad_scaler(trainer) is not None
        self._consecutive_overflows = self._consecutive_overflows + 1 if overflow else 0
        return overflow

    def _decide(self, trainer: L.Trainer, flags: Flags, overflow: bool) -> Event | None:
        """The collective decision: an all-reduce on every step and rank; a second one only on an event."""
        overflowing = self._consecutive_overflows >= self.max_consecutive_skips
        local_nonfinite = flags.nonfinite_loss or (flags.nonfinite_grad and not overflow) or overflowing
        local_spike = flags.loss_spike or (flags.grad_spike and not flags.nonfinite_grad)
        if not trainer.strategy.reduce_boolean_decision(local_nonfinite or local_spike, all=False):
            return None
        if trainer.strategy.reduce_boolean_decision(local_nonfinite, all=False):
            if flags.nonfinite_loss:  # the forward pass overflowed: every gradient is non-finite as a consequence
                reason = "nonfinite_loss"
            elif flags.nonfinite_grad and not overflow:
                reason = "nonfinite_grad"
            elif overflowing:
                reason = f"amp_overflow ({self._consecutive_overflows} consecutive)"
            else:
                reason = "nonfinite_other_rank"
            # overflowing: the scaler has been skipping on its own for max_consecutive_skips steps
            return Event("nonfinite", reason, "stop" if overflowing else self.on_nonfinite)
        reason = "grad_spike" if flags.grad_spike else "loss_spike" if flags.loss_spike else "spike_other_rank"
        return Event("spike", reason, self.on_spike)

    def _spike_ratio(self, event: Event, total: float, loss: float) -> float | None:
        """How far above its recent median the spiking value was."""
        if event.reason not in ("grad_spike", "loss_spike"):
            return None
        value, history = (total, self._norms) if event.reason == "grad_spike" else (loss, self._losses)
        return value / history.median()

    def _remember(self, total: float, loss: float) -> None:
        """A step without an event goes into the spike windows."""
        self._norms.append(total)
        self._losses.append(loss)
        self._seen += 1
        self._consecutive_skips = 0

    def _act(self, trainer: L.Trainer, optimizer: Optimizer, stats: GradStats, event: Event) -> None:
        if event.action == "warn":
            if event.kind == "nonfinite" and self.divergence is None:  # training goes on, but the run has diverged
                self._record_divergence(trainer, stats.step, event.reason)
            return
        self._skip(optimizer)
        self._consecutive_skips += 1
        if event.action == "stop" or self._consecutive_skips >= self.max_consecutive_skips:
            reason = event.reason
            if event.action != "stop":
                reason = f"{reason} ({self._consecutive_skips} consecutive skips)"
            self._record_divergence(trainer, stats.step, reason)
            self._stopped = True
            trainer.should_stop = True  # the same decision on every rank: it came from a collective

    def _skip(self, optimizer: Optimizer) -> None:
        """This step changes nothing: torch optimizers (SGD, Adam(W), RMSprop, Adagrad, ...) collect only the
        parameters whose .grad is not None (src/clipping/apply.py then has nothing to clip)."""
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None
        self.skipped_steps += 1

    def _log_event(self, step: int, event: Event, ratio: float | None) -> None:
        self.events.append(
            {"step": step, "kind": event.kind, "reason": event.reason, "action": event.action, "ratio": ratio}
        )
        n = len(self.events)
        if n <= 3 or n % 50 == 0:  # every event is in self.events (and summary.json); the log stays readable
            more = "" if n <= 3 else f" ({n} events so far)"
            log.warning("divergence guard: %s at step %d (action: %s)%s", event.reason, step, event.action, more)

    def _record_divergence(self, trainer: L.Trainer, step: int, reason: str) -> None:
        diagnosis = self.recorder.diagnose(step, reason)
        diagnosis["clip"] = trainer.gradient_clip_val
        diagnosis["clip_algorithm"] = trainer.gradient_clip_algorithm
        self.divergence = diagnosis
        if trainer.is_global_zero:
            out = Path(self.dirpath or trainer.default_root_dir)  # the run directory (log_dir is a logger subfolder)
            out.mkdir(parents=True, exist_ok=True)
            (out / "divergence.json").write_text(json.dumps(diagnosis, indent=2, default=str))

    def run_totals(self) -> dict[str, Any]:
        """What the guard saw over the fit, for summary.json: events grouped by reason, skips, the divergence."""
        groups: dict[str, dict[str, Any]] = {}
        for event in self.events:
            group = groups.setdefault(
                event["reason"],
                {"reason": event["reason"], "kind": event["kind"], "count": 0, "first_step": event["step"],
                 "largest_ratio": None, "largest_at_step": None, "actions": []},
            )  # fmt: skip
            group["count"] += 1
            ratio = event.get("ratio")
            if ratio is not None and (group["largest_ratio"] is None or ratio > group["largest_ratio"]):
                group["largest_ratio"], group["largest_at_step"] = ratio, event["step"]
            if event["action"] not in group["actions"]:
                group["actions"].append(event["action"])
        for group in groups.values():
            group["threshold"] = self.loss_spike_factor if group["reason"] == "loss_spike" else self.spike_factor
        totals: dict[str, Any] = {
            "skipped_steps": self.skipped_steps,
            "guard_events": self.events[:50],  # the first 50; guard_event_count has them all
            "guard_event_count": len(self.events),
            "guard_summary": list(groups.values()),
            "guard_actions": {"on_nonfinite": self.on_nonfinite, "on_spike": self.on_spike},
            "divergence_step": self.divergence["step"] if self.divergence else None,
        }
        if self.divergence is not None:
            totals["status"] = "diverged"
            totals["divergence"] = {k: v for k, v in self.divergence.items() if k != "history"}
        return totals

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.divergence, self.events, self._loss = None, [], None
        self._consecutive_skips = self._consecutive_overflows = 0
        self._stopped = False

    @override
    def state_dict(self) -> dict[str, Any]:  # the spike windows continue after a resume
        norms, losses = list(self._norms), list(self._losses)
        return {"norms": norms, "losses": losses, "seen": self._seen, "skipped": self.skipped_steps}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for window, saved in ((self._norms, state_dict["norms"]), (self._losses, state_dict["losses"])):
            window.clear()  # oldest first; a checkpoint of an older gradlab holds a (window,) tensor, NaN = empty
            window.extend(v for v in torch.as_tensor(saved, dtype=torch.float64).tolist() if math.isfinite(v))
        self._seen, self.skipped_steps = int(state_dict["seen"]), int(state_dict["skipped"])
