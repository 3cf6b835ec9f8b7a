"""What every benchmark shares: the step timer, the interleaved repeats, and the runner that prints and writes.

A benchmark module defines ``DEFAULTS`` (its --steps/--warmup/--repeats), ``add_arguments(parser)`` and
``measure(args) -> {table name: rows}``; its ``main(argv)`` is ``run(module, argv)``, which parses the command
line, prints every table (markdown, one number format) and writes them as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import lightning as L

from src.analysis.formatting import fmt, markdown_table
from src.bench._device import add_device_argument, bench_device, clock, describe, peak_memory_mib, reset_peak_memory

Tables = dict[str, list[dict[str, Any]]]
K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class UsageError(Exception):
    """A combination of arguments a benchmark cannot measure: a usage error (exit 2)."""


class StepTimer(L.Callback):
    """Wall and process CPU time of the optimizer steps from ``warmup`` to the end of the last one
    (``max_steps``; a run that stops earlier: to the end of the fit).

    On a machine shared with other jobs the wall clock also measures them; the process's CPU time (all its
    threads) is the steadier of the two there, so both are kept. On CUDA the clock synchronises the device and
    the peak tensor memory of the timed steps is kept too.

    Args:
        warmup: optimizer steps before the clock starts.
        out: also write the rates as JSON here at the end (for a Trainer built from a config by ``train(cfg)``,
            where the callback object is out of reach).
    """

    def __init__(self, warmup: int, out: str | None = None) -> None:
        self.warmup, self.out, self.steps = warmup, out, 0
        self.start: tuple[float, float] | None = None  # (wall, cpu)
        self.end = (0.0, 0.0)
        self.peak_mib: float | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            self.start = clock(pl_module.device), time.process_time()
            reset_peak_memory(pl_module.device)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        # the clock stops after the last step, before what ends a fit (the epoch-end checkpoint and
        # callbacks' on_train_end): those cost once per run, not per step; a run stopped early stops in on_train_end
        if self.start is not None and 0 < trainer.max_steps <= trainer.global_step:
            self._stop(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.start is not None and self.steps == 0:
            self._stop(trainer, pl_module)

    def _stop(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.end, self.steps = (clock(pl_module.device), time.process_time()), trainer.global_step - self.warmup
        self.peak_mib = peak_memory_mib(pl_module.device)
        if self.out:
            rates = dict(zip(("steps_per_s", "steps_per_cpu_s"), self.rates, strict=True))
            Path(self.out).write_text(json.dumps({**rates, "peak_mib": self.peak_mib}))

    @property
    def rates(self) -> tuple[float, float]:
        """(steps per wall second, steps per CPU second)"""
        assert self.start is not None, "the timer never started: fewer steps than its warm-up"
        return self.steps / (self.end[0] - self.start[0]), self.steps / (self.end[1] - self.start[1])


def interleaved(
    repeats: int, groups: Sequence[K], variants: Sequence[V], measure: Callable[[K, V], T], show: Callable[[T], str]
) -> dict[tuple[K, V], list[T]]:
    """Every variant of every group once per repeat, the order rotated each repeat so that no variant always runs
    first (a machine warming up or busy for a while then favours none); ``show`` prints each result as it comes.

    Each run starts after a full ``gc.collect()``: the imports leave ~480k objects to the cyclic collector, and
    its first full pass over them (139 ms, measured in a default run) would otherwise land inside whichever
    run's timed window comes first — 12% of a 200-step window at the default size, a one-off, not a step cost."""
    results: dict[tuple[K, V], list[T]] = {(g, v): [] for g in groups for v in variants}
    for repeat in range(repeats):
        for group in groups:
            k = repeat % len(variants)
            for variant in [*variants[k:], *variants[:k]]:
                gc.collect()
                result = measure(group, variant)
                results[(group, variant)].append(result)
                print(f"repeat {repeat} {group} {variant}: {show(result)}", flush=True)
    return results


def spread(name: str, values: Iterable[float]) -> dict[str, float]:
    """``{name: median, name_min: ..., name_max: ...}`` of per-repeat values: a ratio with its scatter."""
    values = list(values)
    return {name: statistics.median(values), f"{name}_min": min(values), f"{name}_max": max(values)}


def markdown(tables: Tables) -> str:
    """Every table under its name, numbers in the one format of src/analysis/formatting.py."""
    parts = []
    for name, rows in tables.items():
        columns = list(dict.fromkeys(key for row in rows for key in row))
        parts.append(f"{name}:\n\n" + markdown_table(columns, [[fmt(row.get(c)) for c in columns] for row in rows]))
    return "\n\n".join(parts)


def run(module: ModuleType, argv: list[str]) -> int:
    """Parse ``argv`` for a benchmark ``module``, measure, print the tables and (``--out``) write them as JSON;
    returns the exit code."""
    name, doc = module.__name__.rsplit(".", 1)[-1], module.__doc__ or ""
    parser = argparse.ArgumentParser(prog=f"scripts/bench.py {name}", description=doc.split("\n")[0])
    defaults = module.DEFAULTS
    parser.add_argument("--steps", type=int, default=defaults["steps"], help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=defaults["warmup"], help="untimed optimizer steps first")
    parser.add_argument("--repeats", type=int, default=defaults["repeats"], help="interleaved runs per variant")
    add_device_argument(parser)
    parser.add_argument("--out", type=Path, help="also write the tables as JSON here")
    module.add_arguments(parser)
    args = parser.parse_args(argv)
    args.device = bench_device(parser, args.device)
    for logger in ("lightning.pytorch", "lightning.fabric"):  # one line per run is enough
        logging.getLogger(logger).setLevel(logging.WARNING)
    try:
        tables: Tables = module.measure(args)
    except UsageError as err:
        parser.error(str(err))
    header = (
        f"{name}: {describe(args.device)}; {args.steps} timed steps after {args.warmup} warm-up, "
        f"medians of {args.repeats} interleaved repeats"
    )
    print(f"\n{header}\n\n{markdown(tables)}")
    if args.out:
        args.out.write_text(json.dumps({"header": header, **tables}, indent=2))
    return 0
