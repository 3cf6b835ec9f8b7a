"""Training-loop efficiency: gradlab's default run against a bare PyTorch loop doing the same math.

    python scripts/bench.py loop [--steps 600] [--warmup 20] [--repeats 3] [--sections efficiency optimizer scaling]
                                 [--sizes default tiny large] [--device cpu|cuda]

- ``efficiency``: conf/train.yaml's sizes, a tiny size (hidden 8, T = 5, batch 8) and, when asked, a size that
  keeps a GPU busy (hidden 512, T = 200, batch 256); four variants: ``bare`` (a hand-written loop: same
  network, batches, loss, optimizer and clip_grad_norm_), ``empty_lightning`` (the same network, batches, loss,
  optimizer and clip in a minimal LightningModule, no callbacks, no logger, no progress bar: Lightning's own
  floor), ``gradlab_bare`` (``train(cfg)`` with callbacks=none logger=none) and ``gradlab`` (``train(cfg)``
  with the default config: every default monitor, the guard, checkpointing, the progress bar, W&B offline +
  CSV). ``vs_bare`` and ``vs_empty`` are medians of per-repeat ratios (``_min``/``_max``: their range);
  ``peak_mib`` is the largest peak memory of the variant's timed windows (src/bench/_device.py: the process's
  RSS on the CPU, tensors on CUDA).
- ``optimizer``: the default size's ``bare`` and ``gradlab`` loops with torch's for-loop, ``foreach`` and
  ``fused`` SGD (``+optimizer.foreach=...``, ``+optimizer.fused=...``), each against the bare loop of the
  same implementation.
- ``scaling``: steps/s of the default run against T (RNN, LSTM) and depth (MLP), beside the least-squares line
  (a fixed per-step overhead plus a constant cost per time step or layer).

Validation is kept out of the timed window (one epoch is longer than the run; train(cfg) validates after fit).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate

from src.bench._device import accelerator, clock, peak_memory_mib, reset_peak_memory
from src.bench._harness import StepTimer, Tables, interleaved, run, spread
from src.build import build_network
from src.config.compose import compose_run
from src.models.module import GradLabModule
from src.train import train

DEFAULTS = {"steps": 600, "warmup": 20, "repeats": 3}
SIZES: dict[str, list[str]] = {
    "default": [],  # conf/train.yaml as it is
    "tiny": ["model.hidden_size=8", "data.seq_len=5", "data.batch_size=8"],
    "large": ["model.hidden_size=512", "data.seq_len=200", "data.batch_size=256"],  # GPU-sized
}
SCALING: dict[str, tuple[str, list[int], list[str]]] = {
    # name: (swept key, values, fixed overrides)
    "rnn": ("data.seq_len", [25, 50, 100, 200], ["model=rnn"]),
    "lstm": ("data.seq_len", [25, 50, 100, 200], ["model=lstm"]),
    "mlp": ("model.depth", [8, 16, 32, 64], ["model=mlp", "data.seq_len=50"]),
}
VARIANTS = ["bare", "empty_lightning", "gradlab_bare", "gradlab"]
OPTIMIZERS: dict[str, list[str]] = {  # name: overrides of conf/optimizer/sgd.yaml
    "for-loop": ["optimizer.foreach=false"],
    "foreach": ["optimizer.foreach=true"],
    "fused": ["optimizer.foreach=null", "+optimizer.fused=true"],
}
Timed = tuple[float, float | None]  # (steps/s, peak MiB or None on the CPU)


def gradlab_run(overrides: list[str], args: argparse.Namespace, tmp: Path, bare: bool) -> Timed:
    out = tmp / f"timer_{time.monotonic_ns()}.json"
    timed = [
        f"trainer.accelerator={accelerator(args.device)}",
        f"trainer.max_steps={args.warmup + args.steps}",
        f"data.batches_per_epoch={args.warmup + args.steps + 1}",  # no validation inside the timed window
        "test=false",
    ]
    if bare:
        timed += ["callbacks=none", "logger=none", "trainer.enable_progress_bar=false"]
    timer = "+callbacks.bench_timer."
    timed += [f"{timer}_target_=src.bench._harness.StepTimer", f"{timer}warmup={args.warmup}", f"{timer}out={out}"]
    train(compose_run(overrides + timed, tmp / out.stem))
    result = json.loads(out.read_text())
    return float(result["steps_per_s"]), result["peak_mib"]


class EmptyLightning(L.LightningModule):
    """Lightning's floor: ``network`` trained on ``loss``, nothing else (no logging, no hooks, no callbacks).

    Args:
        network: the network of the run.
        loss: the training loss, ``loss(output, target)``.
        optimizer: a partial optimizer, called with ``params``.
    """

    def __init__(self, network: torch.nn.Module, loss: Any, optimizer: Any) -> None:
        super().__init__()
        self.network, self.loss, self.optimizer_factory = network, loss, optimizer

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return self.loss(self.network(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(params=self.parameters())


def empty_lightning_run(overrides: list[str], args: argparse.Namespace, tmp: Path) -> Timed:
    """The same math through a bare ``Trainer.fit``: gradlab's data module (batches drawn on the device, as in
    the other variants), Lightning's own clip_grad_norm_."""
    cfg = compose_run(overrides, tmp / "empty")
    L.seed_everything(cfg.seed)
    datamodule = instantiate(cfg.data, batches_per_epoch=args.warmup + args.steps + 1)
    network = build_network(cfg.model, datamodule.task)
    loss = GradLabModule(network, datamodule.task, instantiate(cfg.optimizer)).loss
    timer = StepTimer(args.warmup)
    trainer = L.Trainer(
        accelerator=accelerator(args.device),
        devices=1,
        max_steps=args.warmup + args.steps,
        gradient_clip_val=cfg.clip,
        gradient_clip_algorithm=cfg.clip_algorithm,
        logger=False,
        callbacks=[timer],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=tmp / "empty",
    )
    trainer.fit(EmptyLightning(network, loss, instantiate(cfg.optimizer)), datamodule=datamodule)
    return timer.rates[0], timer.peak_mib


def bare_run(overrides: list[str], args: argparse.Namespace, tmp: Path) -> Timed:
    """The same math without Lightning: draw a batch, forward, loss, backward, clip, step."""
    cfg, device = compose_run(overrides, tmp / "bare"), args.device
    L.seed_everything(cfg.seed)
    datamodule = instantiate(cfg.data)
    network = build_network(cfg.model, datamodule.task).to(device)
    loss_of = GradLabModule(network, datamodule.task, instantiate(cfg.optimizer)).loss
    optimizer = instantiate(cfg.optimizer)(params=network.parameters())
    start = 0.0
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            start = clock(device)
            reset_peak_memory(device)
        x, y = datamodule.draw_batch(device)
        loss = loss_of(network(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip is not None:
            torch.nn.utils.clip_grad_norm_(network.parameters(), cfg.clip)
        optimizer.step()
    return args.steps / (clock(device) - start), peak_memory_mib(device)


def run_variant(variant: str, overrides: list[str], args: argparse.Namespace, tmp: Path) -> Timed:
    if variant == "bare":
        return bare_run(overrides, args, tmp)
    if variant == "empty_lightning":
        return empty_lightning_run(overrides, args, tmp)
    return gradlab_run(overrides, args, tmp, bare=variant == "gradlab_bare")


def ratio_rows(
    runs: dict[tuple[str, str], list[Timed]], groups: list[str], variants: list[str], key: str, base_of: Any
) -> list[dict[str, Any]]:
    """One row per (group, variant): median steps/s, the per-repeat ratios (median, min, max), the largest peak."""
    rows = []
    for group in groups:
        for variant in variants:
            mine = runs[(group, variant)]
            row: dict[str, Any] = {key: group, "variant": variant, "steps_per_s": statistics.median(r[0] for r in mine)}
            for name, base in base_of(group).items():
                if (group, base) in runs:
                    pairs = zip(mine, runs[(group, base)], strict=True)
                    row.update(spread(f"vs_{name}", (r[0] / b[0] for r, b in pairs)))
            peaks = [r[1] for r in mine if r[1] is not None]
            rows.append({**row, "peak_mib": max(peaks) if peaks else None})
    return rows


def efficiency(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    runs = interleaved(
        args.repeats,
        args.sizes,
        VARIANTS,
        lambda size, variant: run_variant(variant, SIZES[size], args, tmp),
        lambda t: f"{t[0]:.1f} steps/s",
    )
    return ratio_rows(runs, args.sizes, VARIANTS, "size", lambda _: {"bare": "bare", "empty": "empty_lightning"})


def optimizer(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    runs = interleaved(
        args.repeats,
        list(OPTIMIZERS),
        ["bare", "gradlab"],
        lambda impl, variant: run_variant(variant, SIZES["default"] + OPTIMIZERS[impl], args, tmp),
        lambda t: f"{t[0]:.1f} steps/s",
    )
    rows = ratio_rows(runs, list(OPTIMIZERS), ["bare", "gradlab"], "sgd", lambda _: {"bare": "bare"})
    for row in rows:  # against the bare for-loop SGD: what each implementation gives the loop
        base = statistics.median(r[0] for r in runs[("for-loop", row["variant"])])
        row["vs_for_loop"] = row["steps_per_s"] / base
    return rows


def scaling(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    rows = []
    for name, (key, values, fixed) in SCALING.items():
        short = key.split(".")[-1]
        points = []
        for value in values:
            runs = [
                gradlab_run([*fixed, f"{key}={value}"], args, tmp, bare=False)[0] for _ in range(args.scaling_repeats)
            ]
            points.append((value, statistics.median(runs)))
            print(f"scaling {name} {short}={value}: {points[-1][1]:.1f} steps/s", flush=True)
        intercept, slope = linear_fit([v for v, _ in points], [1000 / sps for _, sps in points])
        for value, sps in points:
            row = {"model": name, "size": f"{short}={value}", "steps_per_s": sps, "ms_per_step": 1000 / sps}
            fit = f"{intercept:.2f} ms + {slope:.3f} ms x {short}"
            rows.append({**row, "linear_fit_ms": intercept + slope * value, "fit": fit})
    return rows


def linear_fit(x: list[float], y: list[float]) -> tuple[float, float]:
    """Least-squares intercept and slope of y against x."""
    n, mx, my = len(x), sum(x) / len(x), sum(y) / len(y)
    sxx = sum((a - mx) ** 2 for a in x)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx if n > 1 and sxx else 0.0
    return my - slope * mx, slope


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scaling-repeats", type=int, default=1, help="runs per scaling point (median)")
    sections = ["efficiency", "optimizer", "scaling"]
    parser.add_argument("--sections", nargs="+", default=sections, choices=sections)
    parser.add_argument("--sizes", nargs="+", default=["default", "tiny"], choices=list(SIZES), help="efficiency sizes")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: see src/reproduce.py)")


def measure(args: argparse.Namespace) -> Tables:
    torch.set_num_threads(args.threads)
    for name in ("lightning.pytorch", "lightning.fabric", "src"):
        logging.getLogger(name).setLevel(logging.ERROR)
    sections = {"efficiency": efficiency, "optimizer": optimizer, "scaling": scaling}
    with tempfile.TemporaryDirectory() as tmp:
        return {name: sections[name](args, Path(tmp)) for name in args.sections}


def main(argv: list[str]) -> int:
    return run(sys.modules[__name__], argv)
