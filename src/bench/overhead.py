"""What gradlab's callbacks cost a training step, measured inside one run: switched on and off in alternating blocks.

    python scripts/bench.py overhead [--steps 2000] [--block 4] [--sizes default tiny]

Whole runs on a shared machine scatter by several percent (``bench loop``: the same variant 5-10% apart
minutes later), which hides a cost of 1-3%. Here one default run (``train(cfg)``: every default monitor, the
guard, checkpointing, the progress bar, W&B offline + CSV) runs its callbacks' per-step hooks only in every
other block of ``--block`` steps (the blocks in between are the same run without them: the clip then reads
the norms itself, as a loop without monitors does), so a drift of the machine's speed reaches both sides
alike. Each step is timed from one batch start to the next:

- ``callbacks_ms``: the median over block pairs of (mean step "on" − mean step "off"), logging steps left out
  (``_q1``/``_q3``: the quartiles of those pair differences);
- ``logging_ms``: what the logging steps (step 0 and Lightning's, (b + 1) % log_every_n_steps == 0, with the
  step after each) add per step on average, against the median step "on": the loggers, the monitors'
  logging work, ThroughTimeMonitor's extra passes;
- ``share``: both together over the median step "off" — gradlab's own cost over the same loop without its
  callbacks, the one that ``bench loop``'s ``gradlab_bare`` row shows equal to Lightning's empty loop within
  its scatter.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch

from src.bench._device import accelerator
from src.bench._harness import Tables, run
from src.bench.loop import SIZES
from src.callbacks.group import CallbackGroup, _fan_out, _overrides
from src.config.compose import compose_run
from src.train import train

DEFAULTS = {"steps": 2000, "warmup": 50, "repeats": 1}
STEP_HOOKS = (
    "on_train_batch_start",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_train_batch_end",
)


class BlockGate(L.Callback):
    """Runs the per-step hooks of every other callback only in the "on" blocks of ``block`` steps, times every
    step (batch start to batch start) from ``warmup`` on, and writes ``split``'s figures to ``out`` at the end.

    Args:
        block: steps per block; blocks alternate on, off, on, ... from the first step.
        warmup: steps before the timing starts.
        out: the JSON file the figures go to (the Trainer built by ``train(cfg)`` is out of reach); None: none
            (the caller reads ``split(gate, ...)`` itself).
    """

    def __init__(self, block: int, warmup: int, out: str | None = None) -> None:
        self.block, self.warmup, self.out = block, warmup, out
        self.durations: dict[int, float] = {}  # batch number (1-based, Lightning's counter) -> seconds
        self._last: float | None = None
        self._trainer: L.Trainer | None = None

    def _batch(self) -> int:
        assert self._trainer is not None
        return self._trainer.fit_loop.epoch_loop.batch_progress.total.ready

    def is_on(self, batch: int) -> bool:
        return ((batch - 1) // self.block) % 2 == 0

    def _gated(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(hook)
        def call(*args: Any, **kwargs: Any) -> Any:
            return hook(*args, **kwargs) if self.is_on(self._batch()) else None

        return call

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer
        for callback in trainer.callbacks:
            members = callback.callbacks if isinstance(callback, CallbackGroup) else [callback]
            for hook in STEP_HOOKS:
                calls = [self._gated(getattr(c, hook)) for c in members if c is not self and _overrides(c, hook)]
                if hook == "on_train_batch_start" and self in members:
                    calls.insert(0, self._tick)
                if calls:
                    setattr(callback, hook, calls[0] if len(calls) == 1 else _fan_out(calls))

    def _tick(self, trainer: L.Trainer, *args: Any) -> None:
        now, batch = time.perf_counter(), self._batch()
        if self._last is not None and batch - 1 > self.warmup:
            self.durations[batch - 1] = now - self._last
        self._last = now

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.out is not None:
            Path(self.out).write_text(json.dumps(split(self, trainer.log_every_n_steps)))


def split(gate: BlockGate, every: int) -> dict[str, float]:
    """The run's figures (module docstring) from the gate's step times; ``every``: Lightning's logging interval."""

    def logs(batch: int) -> bool:  # batch b (1-based) takes optimizer step b - 1
        return batch == 1 or batch % every in (0, 1)

    plain: dict[int, list[float]] = {}
    for batch, seconds in gate.durations.items():
        if not logs(batch):
            plain.setdefault((batch - 1) // gate.block, []).append(seconds)
    pairs = [statistics.mean(plain[b]) - statistics.mean(plain[b + 1]) for b in plain if b % 2 == 0 and b + 1 in plain]
    on = [d for b, d in gate.durations.items() if not logs(b) and gate.is_on(b)]
    off = [d for b, d in gate.durations.items() if not logs(b) and not gate.is_on(b)]
    logging_steps = [d for b, d in gate.durations.items() if logs(b) and gate.is_on(b)]
    on_ms, off_ms = statistics.median(on) * 1e3, statistics.median(off) * 1e3
    share_logging = len(logging_steps) / max(1, sum(1 for b in gate.durations if gate.is_on(b)))
    logging_ms = (statistics.mean(logging_steps) * 1e3 - on_ms) * share_logging if logging_steps else 0.0
    q1, median, q3 = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else [pairs[0]] * 3
    callbacks_ms = median * 1e3
    return {
        "step_off_ms": off_ms,
        "step_on_ms": on_ms,
        "callbacks_ms": callbacks_ms,
        "callbacks_ms_q1": q1 * 1e3,
        "callbacks_ms_q3": q3 * 1e3,
        "logging_ms": logging_ms,
        "share": ((1 - share_logging) * callbacks_ms + logging_ms) / off_ms,
        "block_pairs": len(pairs),
    }


def measure_size(size: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    out = tmp / f"{size}.json"
    gate = "+callbacks.block_gate."
    overrides = [
        *SIZES[size],
        f"trainer.accelerator={accelerator(args.device)}",
        f"trainer.max_steps={args.warmup + args.steps}",
        f"data.batches_per_epoch={args.warmup + args.steps + 1}",  # no validation inside the timed window
        "test=false",
        f"{gate}_target_=src.bench.overhead.BlockGate",
        f"{gate}block={args.block}",
        f"{gate}warmup={args.warmup}",
        f"{gate}out={out}",
    ]
    train(compose_run(overrides, tmp / size))
    return {"size": size, **json.loads(out.read_text())}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--block", type=int, default=4, help="steps per on/off block")
    parser.add_argument("--sizes", nargs="+", default=["default", "tiny"], choices=list(SIZES))


def measure(args: argparse.Namespace) -> Tables:
    torch.set_num_threads(1)
    for name in ("lightning.pytorch", "lightning.fabric", "src"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        return {"per_step": [measure_size(size, args, Path(tmp)) for size in args.sizes]}


def main(argv: list[str]) -> int:
    return run(sys.modules[__name__], argv)
