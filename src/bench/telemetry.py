"""What gradient telemetry costs: training steps/s with and without it, side by side in one run.

    python scripts/bench.py telemetry [--steps 500] [--repeats 5] [--models mlp rnn rnn_large] [--device cpu|cuda]
                                      [--out bench.json]

Variants, each on the same model, data, Trainer settings and logger (a W&B run, offline, in a temp dir):

- ``none``: no telemetry;
- ``norm_floor``: the least any monitor of the per-step pre-clip norm can do — one ``torch._foreach_norm``
  over the gradients every optimizer step, kept on device — so the cost of reading every gradient once on
  this machine is measured beside the monitors that must do it;
- ``default``: the monitors of conf/callbacks/default.yaml, with their configured intervals;
- ``lightning_recipe``: Lightning's documented recipe, ``self.log_dict(grad_norm(self, norm_type=2))`` in
  ``on_before_optimizer_step`` (a Python loop of per-parameter norms, one host sync each);
- ``watch_1`` / ``watch_50``: ``wandb.watch(model, log="all", log_freq=1 | 50)``.

Models: a 50-layer width-256 tanh MLP and a tanh RNN (hidden 128) over T = 100 steps (batch 32); on request a
GPU-sized tanh RNN (``rnn_large``: hidden 512, T = 200, batch 256). Each run times
``--steps`` optimizer steps after ``--warmup`` steps; runs are interleaved (every variant once per repeat,
the order rotated) and the median of the repeats is reported, with its ratio to ``none``, per wall-clock
second and per CPU second of the process (the steadier measure on a machine shared with other jobs); the
ratios are medians of the per-repeat ratios, each variant against the ``none`` run of its own repeat.
Whole runs on a shared machine still scatter by several percent, so every callback of a variant is also
timed directly: CPU time inside its hooks over the timed steps, as ms per step and as a share of the run
(work a monitor's forward hooks add inside the forward pass is not in that column, nor wandb.watch's; on CUDA the
column is the host's share: kernels run asynchronously). On CUDA each run also reports its peak tensor memory
over the timed steps. Trainer:
``log_every_n_steps=25`` (the project default), so the default 500-step window (steps 10 to 509) holds the
same share of logging (20), through-time (1) and histogram (1) steps as a long run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import grad_norm
from omegaconf import OmegaConf
from torch import Tensor, nn

from src.bench._device import (
    accelerator,
    add_device_argument,
    bench_device,
    clock,
    describe,
    peak_memory_mib,
    reset_peak_memory,
)
from src.config.compose import compose_run
from src.grad_norms import fused_norms

TELEMETRY_CLASSES = (
    "GradNormMonitor",
    "WeightMonitor",
    "ActivationMonitor",
    "AttentionMonitor",
    "ThroughTimeMonitor",
    "HistogramMonitor",
)
VARIANTS = ("none", "norm_floor", "default", "lightning_recipe", "watch_1", "watch_50")
LOG_EVERY_N_STEPS = 25


class Regression(L.LightningModule):
    def __init__(self, network: nn.Module, sequence: bool) -> None:
        super().__init__()
        self.network, self.sequence = network, sequence

    def forward(self, x: Tensor) -> Tensor:
        if self.sequence:
            out, _ = self.network[0](x)  # (B, T, H)
            return self.network[1](out[:, -1])
        return self.network(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=1e-3)


def mlp() -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(50):
        layers += [nn.Linear(256, 256), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(256, 1))


def rnn(hidden: int = 128) -> nn.Module:
    return nn.Sequential(nn.RNN(8, hidden, batch_first=True), nn.Linear(hidden, 1))


MODELS: dict[str, tuple[Callable[[], nn.Module], bool, tuple[int, ...]]] = {
    # name: (network, is a sequence model, input shape of one batch)
    "mlp": (mlp, False, (64, 256)),
    "rnn": (rnn, True, (32, 100, 8)),
    "rnn_large": (lambda: rnn(512), True, (256, 200, 8)),  # enough work per step to keep a GPU busy
}
DEFAULT_MODELS = ["mlp", "rnn"]


def batches(shape: tuple[int, ...], n: int, device: torch.device) -> list[tuple[Tensor, Tensor]]:
    """``n`` distinct batches made up front on the device: the loop measures training, not data."""
    g = torch.Generator(device="cpu").manual_seed(0)
    out = []
    for _ in range(n):
        x = torch.randn(shape, generator=g)
        out.append((x.to(device), x.flatten(1).mean(1, keepdim=True).to(device)))
    return out


class LightningRecipe(L.Callback):
    """Lightning's documented way to watch gradient norms (LightningModule.on_before_optimizer_step docs)."""

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        pl_module.log_dict(grad_norm(pl_module, norm_type=2))


class NormFloor(L.Callback):
    """The total pre-clip gradient norm every optimizer step, on device, and nothing else."""

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.norm = torch.linalg.vector_norm(fused_norms(grads))


class StepTimer(L.Callback):
    """Wall and process CPU time of the optimizer steps after ``warmup``, up to the end of the last one.

    On a machine shared with other jobs the wall clock also measures them; the process's CPU time (all its
    threads) is the steadier of the two there, so both are reported.
    """

    def __init__(self, warmup: int) -> None:
        self.warmup, self.steps = warmup, 0
        self.start, self.end = (0.0, 0.0), (0.0, 0.0)  # (wall, cpu)
        self.peak_mib: float | None = None  # peak tensor memory over the timed steps (CUDA only)

    @staticmethod
    def _now(pl_module: L.LightningModule) -> tuple[float, float]:
        return clock(pl_module.device), time.process_time()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if trainer.global_step == self.warmup:
            self.start = self._now(pl_module)
            reset_peak_memory(pl_module.device)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.end, self.steps = self._now(pl_module), trainer.global_step - self.warmup
        self.peak_mib = peak_memory_mib(pl_module.device)

    @property
    def rates(self) -> tuple[float, float]:
        """(steps per wall second, steps per CPU second)"""
        return self.steps / (self.end[0] - self.start[0]), self.steps / (self.end[1] - self.start[1])


class HookClock(L.Callback):
    """CPU seconds spent inside each wrapped callback's hooks, from optimizer step ``warmup`` on.

    Put it first in the Trainer's callback list: at the first timed batch it clears what the warm-up
    steps recorded, before the other callbacks' hooks of that batch run.
    """

    HOOKS = tuple(h for h in vars(L.Callback) if h.startswith("on_") or h in ("setup", "teardown"))

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def wrap(self, callback: L.Callback) -> L.Callback:
        """Time every hook ``callback``'s class overrides (instance attributes shadow the methods)."""
        for hook in self.HOOKS:
            if getattr(type(callback), hook) is not getattr(L.Callback, hook):
                setattr(callback, hook, self._timed(type(callback).__name__, getattr(callback, hook)))
        return callback

    def _timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.process_time() - start

        return timed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if trainer.global_step == self.warmup:
            self.seconds.clear()


TELEMETRY = {f"src.callbacks.{name}" for name in TELEMETRY_CLASSES}


def default_monitors() -> list[L.Callback]:
    """The telemetry entries of conf/callbacks/default.yaml, as a run would build them (checkpointing,
    progress bar and divergence guard are not telemetry: they stay out of every variant)."""
    with tempfile.TemporaryDirectory() as tmp:  # conf/callbacks/default.yaml composes one file per callback
        entries = OmegaConf.to_container(compose_run(["callbacks=default"], Path(tmp)).callbacks, resolve=False)
    assert isinstance(entries, dict)
    return [instantiate(c) for c in entries.values() if isinstance(c, dict) and c.get("_target_") in TELEMETRY]


Run = tuple[float, float, dict[str, float], float | None]


def run_once(model: str, variant: str, steps: int, warmup: int, run: Any, device: torch.device, save_dir: Path) -> Run:
    """(steps per wall second, steps per CPU second, CPU ms per step inside each monitor, peak MiB) of one run."""
    make, sequence, shape = MODELS[model]
    torch.manual_seed(0)
    module = Regression(make(), sequence)
    data = batches(shape, 16, device)
    timer, hook_clock = StepTimer(warmup), HookClock(warmup)
    callbacks: list[L.Callback] = [hook_clock, timer]
    if variant == "default":
        callbacks += [hook_clock.wrap(c) for c in default_monitors()]
    elif variant == "norm_floor":
        callbacks.append(hook_clock.wrap(NormFloor()))
    elif variant == "lightning_recipe":
        callbacks.append(hook_clock.wrap(LightningRecipe()))
    elif variant.startswith("watch_"):
        run.watch(module, log="all", log_freq=int(variant.removeprefix("watch_")))
    trainer = L.Trainer(
        accelerator=accelerator(device),
        devices=1,
        max_steps=warmup + steps,
        log_every_n_steps=LOG_EVERY_N_STEPS,
        logger=WandbLogger(experiment=run, save_dir=save_dir),
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=save_dir,
    )
    # the batches are already on the device: an epoch is 16 of them, cycled until max_steps
    loader = torch.utils.data.DataLoader(data, batch_size=None)
    try:
        trainer.fit(module, loader)
    finally:
        if variant.startswith("watch_"):
            run.unwatch(module)
    return (*timer.rates, {name: 1e3 * sec / timer.steps for name, sec in hook_clock.seconds.items()}, timer.peak_mib)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench.py telemetry", description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=list(MODELS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=500, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed optimizer steps first")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs per (model, variant)")
    add_device_argument(parser)
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    device = bench_device(parser, args.device)
    if "none" not in args.variants:
        parser.error("the 'none' variant is the baseline of every ratio")

    import logging

    import wandb

    for name in ("lightning.pytorch", "lightning.fabric"):  # one line per run is enough
        logging.getLogger(name).setLevel(logging.WARNING)
    # results[model][variant][repeat] = (wall rate, CPU rate, CPU ms per step inside each monitor, peak MiB)
    results: dict[str, dict[str, list[Run]]] = {m: {v: [] for v in args.variants} for m in args.models}
    with tempfile.TemporaryDirectory() as tmp:
        run = wandb.init(mode="offline", dir=tmp, project="gradlab-bench", settings=wandb.Settings(silent=True))
        try:
            for repeat in range(args.repeats):
                for model in args.models:
                    k = repeat % len(args.variants)  # rotate the order: no variant always runs first
                    for variant in args.variants[k:] + args.variants[:k]:
                        timed = run_once(model, variant, args.steps, args.warmup, run, device, Path(tmp))
                        results[model][variant].append(timed)
                        wall, cpu = timed[:2]
                        print(f"repeat {repeat} {model:4s} {variant:17s} {wall:8.1f} steps/s {cpu:8.1f} steps/cpu-s")
        finally:
            run.finish()
    device_name = describe(device)
    cuda = device.type == "cuda"
    print(f"\nmedian of {args.repeats} interleaved runs, {args.steps} timed steps each, {device_name}")
    print("ratios: median over repeats of (variant / none of the same repeat)")
    header = f"{'model':6s} {'variant':17s} {'steps/s':>9s} {'vs none':>8s} {'steps/cpu-s':>12s} {'vs none':>8s}"
    print(header + ("  peak MiB" if cuda else ""))
    summary: dict[str, Any] = {}
    for model, by_variant in results.items():
        base = by_variant["none"]
        for variant, runs in by_variant.items():
            wall, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
            ratio = statistics.median(r[0] / b[0] for r, b in zip(runs, base, strict=True))
            cpu_ratio = statistics.median(r[1] / b[1] for r, b in zip(runs, base, strict=True))
            peaks = [r[3] for r in runs if r[3] is not None]
            peak = max(peaks) if peaks else None
            summary[f"{model}/{variant}"] = {
                "steps_per_s": wall,
                "ratio": ratio,
                "steps_per_cpu_s": cpu,
                "cpu_ratio": cpu_ratio,
                "peak_mib": peak,
                "runs": [r[:2] for r in runs],
            }
            line = f"{model:6s} {variant:17s} {wall:9.1f} {ratio:8.3f} {cpu:12.1f} {cpu_ratio:8.3f}"
            print(line + (f" {peak:9.1f}" if peak is not None else ""))
    print("\ntimed directly: CPU ms per step inside each callback's hooks, and their share of the run's CPU time")
    for model, by_variant in results.items():
        for variant, runs in by_variant.items():
            callbacks = sorted({name for r in runs for name in r[2]}, key=lambda n: -runs[0][2].get(n, 0.0))
            if not callbacks:  # no telemetry, or wandb.watch (module hooks, not callback hooks)
                continue
            shares = {}
            for name in [*callbacks, "all"] if len(callbacks) > 1 else callbacks:
                ms = [sum(r[2].values()) if name == "all" else r[2].get(name, 0.0) for r in runs]
                share = [m * r[1] / 1e3 for m, r in zip(ms, runs, strict=True)]  # ms/step x steps/CPU-s
                shares[name] = {"ms_per_step": statistics.median(ms), "share": statistics.median(share)}
                label, (ms_step, frac) = f"{variant}: {name}", shares[name].values()
                print(f"{model:6s} {label:35s} {ms_step:7.3f} ms {100 * frac:6.2f}%")
            summary[f"{model}/{variant}"]["callbacks"] = shares
    if args.out:
        args.out.write_text(json.dumps({"device": device_name, "steps": args.steps, "results": summary}, indent=2))
    return 0
