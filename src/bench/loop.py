"""Training-loop efficiency: gradlab's default run against a bare PyTorch loop doing the same math.

    python scripts/bench.py loop [--steps 200] [--warmup 20] [--repeats 3] [--sections efficiency scaling]
                                 [--sizes default tiny large] [--device cpu|cuda]

- ``efficiency``: at the default sizes (LSTM, hidden 64, adding T = 50, batch 64, Adam, clip 1.0), at a tiny
  size (hidden 8, T = 5, batch 8) and, when asked (``--sizes ... large``), at a size that keeps a GPU busy
  (hidden 512, T = 200, batch 256), three variants, interleaved (the order rotates every repeat), medians:
  ``bare`` (a hand-written loop: same network, batches, loss, optimizer and clip_grad_norm_), ``gradlab``
  (``train(cfg)`` with the default config: every default monitor, the divergence guard, checkpointing, the
  progress bar and the W&B (offline) + CSV loggers) and ``gradlab_bare`` (``train(cfg)`` with callbacks=none
  logger=none: Lightning's own loop cost).
- ``scaling``: steps/s of gradlab's default run against T (RNN, LSTM) and against depth (MLP); the time per
  step should be linear, a fixed per-step overhead plus a constant cost per time step (BPTT is T sequential
  cell steps) or per layer (one matmul each): the table gives the least-squares line beside each measurement.

gradlab's steps are timed by a callback from the ``warmup``-th optimizer step to the last one, with validation
kept out of the window (one epoch is longer than the run; train(cfg) validates after fit, untimed). On CUDA the
clock synchronises the device at both ends, and each run's peak tensor memory over the timed steps is reported.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate

from src.bench._device import (
    accelerator,
    add_device_argument,
    bench_device,
    clock,
    describe,
    peak_memory_mib,
    reset_peak_memory,
)
from src.build import build_network
from src.config.compose import compose_run
from src.models.module import GradLabModule
from src.train import train

SIZES: dict[str, list[str]] = {
    "default": [],  # conf/train.yaml as it is: LSTM hidden 64, adding T = 50, batch 64
    "tiny": ["model.hidden_size=8", "data.seq_len=5", "data.batch_size=8"],
    "large": ["model.hidden_size=512", "data.seq_len=200", "data.batch_size=256"],  # GPU-sized
}
SCALING: dict[str, tuple[str, list[int], list[str]]] = {
    # name: (swept key, values, fixed overrides)
    "rnn": ("data.seq_len", [25, 50, 100, 200], ["model=rnn"]),
    "lstm": ("data.seq_len", [25, 50, 100, 200], ["model=lstm"]),
    "mlp": ("model.depth", [8, 16, 32, 64], ["model=mlp", "data.seq_len=50"]),
}


class StepTimer(L.Callback):
    """Writes the steps/s of the optimizer steps after ``warmup`` and their peak memory to ``out`` (JSON)."""

    def __init__(self, warmup: int, out: str) -> None:
        self.warmup, self.out, self.start = warmup, Path(out), 0.0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if trainer.global_step == self.warmup and self.start == 0.0:
            self.start = clock(pl_module.device)
            reset_peak_memory(pl_module.device)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        steps = trainer.global_step - self.warmup
        sps = steps / (clock(pl_module.device) - self.start)
        self.out.write_text(json.dumps({"steps_per_s": sps, "peak_mib": peak_memory_mib(pl_module.device)}))


Timed = tuple[float, float | None]  # (steps/s, peak MiB or None on the CPU)


def gradlab_run(overrides: list[str], steps: int, warmup: int, tmp: Path, bare: bool, device: torch.device) -> Timed:
    out = tmp / f"timer_{time.monotonic_ns()}.json"
    timed = [
        f"trainer.accelerator={accelerator(device)}",
        f"trainer.max_steps={warmup + steps}",
        f"data.batches_per_epoch={warmup + steps + 1}",  # no validation inside the timed window
        "test=false",
        "+callbacks.bench_timer._target_=src.bench.loop.StepTimer",
        f"+callbacks.bench_timer.warmup={warmup}",
        f"+callbacks.bench_timer.out={out}",
    ]
    if bare:
        timed += ["callbacks=none", "logger=none", "trainer.enable_progress_bar=false"]
        timed = [t for t in timed if not t.startswith("+callbacks.")] + [
            "+callbacks.bench_timer._target_=src.bench.loop.StepTimer",
            f"+callbacks.bench_timer.warmup={warmup}",
            f"+callbacks.bench_timer.out={out}",
        ]
    cfg = compose_run(overrides + timed, tmp / out.stem)
    train(cfg)
    result = json.loads(out.read_text())
    return float(result["steps_per_s"]), result["peak_mib"]


def bare_run(overrides: list[str], steps: int, warmup: int, tmp: Path, device: torch.device) -> Timed:
    """The same math without Lightning: draw a batch, forward, loss, backward, clip, step."""
    cfg = compose_run(overrides, tmp / "bare")
    L.seed_everything(cfg.seed)
    datamodule = instantiate(cfg.data)
    network = build_network(cfg.model, datamodule.task).to(device)
    loss_of = GradLabModule(network, datamodule.task, instantiate(cfg.optimizer)).loss
    optimizer = instantiate(cfg.optimizer)(params=network.parameters())
    start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            start = clock(device)
            reset_peak_memory(device)
        x, y = datamodule.draw_batch(device)
        loss = loss_of(network(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip is not None:
            torch.nn.utils.clip_grad_norm_(network.parameters(), cfg.clip)
        optimizer.step()
    return steps / (clock(device) - start), peak_memory_mib(device)


def measure(variant: str, overrides: list[str], steps: int, warmup: int, tmp: Path, device: torch.device) -> Timed:
    if variant == "bare":
        return bare_run(overrides, steps, warmup, tmp, device)
    return gradlab_run(overrides, steps, warmup, tmp, bare=variant == "gradlab_bare", device=device)


def efficiency(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    variants = ["bare", "gradlab", "gradlab_bare"]
    runs: dict[tuple[str, str], list[Timed]] = {(s, v): [] for s in args.sizes for v in variants}
    for repeat in range(args.repeats):
        for size in args.sizes:
            k = repeat % len(variants)
            for variant in variants[k:] + variants[:k]:
                timed = measure(variant, SIZES[size], args.steps, args.warmup, tmp, args.device)
                runs[(size, variant)].append(timed)
                print(f"[loop] repeat {repeat} {size:7s} {variant:12s} {timed[0]:8.1f} steps/s", flush=True)
    rows = []
    for size in args.sizes:
        bare = statistics.median(sps for sps, _ in runs[(size, "bare")])
        for variant in variants:
            median = statistics.median(sps for sps, _ in runs[(size, variant)])
            peaks = [peak for _, peak in runs[(size, variant)] if peak is not None]
            rows.append(
                {
                    "size": size,
                    "variant": variant,
                    "steps_per_s": median,
                    "vs_bare": median / bare,
                    "peak_mib": max(peaks) if peaks else None,
                }
            )
    return rows


def scaling(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    rows = []
    for name, (key, values, fixed) in SCALING.items():
        for value in values:
            overrides = [*fixed, f"{key}={value}"]
            sps = statistics.median(
                gradlab_run(overrides, args.steps, args.warmup, tmp, bare=False, device=args.device)[0]
                for _ in range(args.scaling_repeats)
            )
            rows.append({"model": name, key: value, "steps_per_s": sps, "ms_per_step": 1000 / sps})
            print(f"[loop] scaling {name} {key}={value}: {sps:.1f} steps/s", flush=True)
        mine = [r for r in rows if r["model"] == name]
        intercept, slope = linear_fit([r[key] for r in mine], [r["ms_per_step"] for r in mine])
        for r in mine:
            # linear cost = a fixed per-step overhead plus a constant cost per time step / layer
            r["fit_ms"] = intercept + slope * r[key]
            r["fit_intercept_ms"], r["fit_slope_ms"] = intercept, slope
    return rows


def linear_fit(x: list[float], y: list[float]) -> tuple[float, float]:
    """Least-squares intercept and slope of y against x."""
    n, mx, my = len(x), sum(x) / len(x), sum(y) / len(y)
    sxx = sum((a - mx) ** 2 for a in x)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx if n > 1 and sxx else 0.0
    return my - slope * mx, slope


def format_tables(result: dict[str, Any]) -> str:
    lines = [f"loop benchmark: {result['device']}, {result['steps']} timed steps after {result['warmup']} warm-up"]
    if result.get("efficiency"):
        peak = any(r["peak_mib"] is not None for r in result["efficiency"])
        lines += ["", f"{'size':8s} {'variant':13s} {'steps/s':>9s} {'vs bare':>8s}" + ("  peak MiB" if peak else "")]
        for r in result["efficiency"]:
            line = f"{r['size']:8s} {r['variant']:13s} {r['steps_per_s']:9.1f} {r['vs_bare']:8.3f}"
            lines.append(line + (f" {r['peak_mib']:9.1f}" if peak else ""))
    if result.get("scaling"):
        lines += ["", f"{'model':6s} {'size':>12s} {'steps/s':>9s} {'ms/step':>8s} {'linear fit':>10s}  fit"]
        for r in result["scaling"]:
            size = next(f"{k.split('.')[-1]}={v}" for k, v in r.items() if k in ("data.seq_len", "model.depth"))
            lines.append(
                f"{r['model']:6s} {size:>12s} {r['steps_per_s']:9.1f} {r['ms_per_step']:8.2f} {r['fit_ms']:10.2f}  "
                f"{r['fit_intercept_ms']:.2f} ms + {r['fit_slope_ms']:.3f} ms x {size.split('=')[0]}"
            )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench.py loop", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=20, help="untimed optimizer steps first")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per (size, variant)")
    parser.add_argument("--scaling-repeats", type=int, default=1, help="runs per scaling point (median)")
    parser.add_argument("--sections", nargs="+", default=["efficiency", "scaling"], choices=["efficiency", "scaling"])
    parser.add_argument("--sizes", nargs="+", default=["default", "tiny"], choices=list(SIZES), help="efficiency sizes")
    add_device_argument(parser)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: see src/reproduce.py)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    args.device = bench_device(parser, args.device)
    torch.set_num_threads(args.threads)
    for name in ("lightning.pytorch", "lightning.fabric", "src"):
        logging.getLogger(name).setLevel(logging.ERROR)
    result: dict[str, Any] = {
        "device": describe(args.device),
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
    }
    with tempfile.TemporaryDirectory() as tmp:
        if "efficiency" in args.sections:
            result["efficiency"] = efficiency(args, Path(tmp))
        if "scaling" in args.sections:
            result["scaling"] = scaling(args, Path(tmp))
    print("\n" + format_tables(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0
