"""What the DivergenceGuard costs: training steps/s without and with it, side by side in one run.

    python scripts/bench.py guard [--steps 250] [--repeats 5] [--models mlp rnn] [--device cpu|cuda] [--out g.json]

Same models, data and Trainer settings as ``bench telemetry`` (a 50-layer width-256 tanh MLP, a tanh RNN at
T = 100). The guard computes the per-layer norms (shared with GradNormMonitor when both run) and moves four
flags to the host every optimizer step — the one host sync per step that a skip/stop decision needs — so
``guard`` is measured alone, and ``guard+grad_norm`` against ``grad_norm`` to show the shared computation.
Rates are optimizer steps per CPU second of the training process (run with OMP_NUM_THREADS=1), which other
jobs on the machine do not inflate the way they inflate wall time. Whole runs still scatter by about a
millisecond per step, so the two parts of the guard's cost — the pre-clip norms and its own decision (flags,
medians, flight recorder, the host copy) — are also timed directly, one call after another, on real gradients.
On CUDA every rate and direct timing is wall-clock time with the device synchronised (GPU work is not CPU time);
there the guard's host copy also waits for the step's queued kernels, which the whole-run rates show.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from src.bench._device import accelerator, add_device_argument, bench_device, clock, describe
from src.bench.telemetry import DEFAULT_MODELS, MODELS, Regression, StepTimer, batches
from src.callbacks import DivergenceGuard, GradNormMonitor
from src.grad_norms import grad_norms

VARIANTS = {
    "none": list,
    "guard": lambda: [DivergenceGuard()],
    "grad_norm": lambda: [GradNormMonitor()],
    "guard+grad_norm": lambda: [GradNormMonitor(), DivergenceGuard()],
}


def run_once(model: str, variant: str, steps: int, warmup: int, save_dir: Path, device: torch.device) -> float:
    make, sequence, shape = MODELS[model]
    torch.manual_seed(0)
    timer = StepTimer(warmup)
    trainer = L.Trainer(
        accelerator=accelerator(device),
        devices=1,
        max_steps=warmup + steps,
        log_every_n_steps=25,
        logger=False,
        callbacks=[timer, *VARIANTS[variant]()],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=save_dir,
    )
    loader = torch.utils.data.DataLoader(batches(shape, 16, device), batch_size=None)
    trainer.fit(Regression(make(), sequence), loader)
    # the CPU: steps per CPU second of this process, steadier than wall time on a shared machine
    return timer.rates[0] if device.type == "cuda" else timer.rates[1]


def per_step_costs(model: str, device: torch.device, calls: int = 500) -> tuple[float, float]:
    """ms per step of (pre-clip norms, the guard's own decision with the norms cached), in this process.

    Whole-run rates on a shared machine scatter by about a millisecond per step; the two parts of the guard's
    cost are far smaller, so they are also timed directly: the same hooks Lightning calls, on real gradients.
    """
    make, sequence, shape = MODELS[model]
    torch.manual_seed(0)
    module = Regression(make(), sequence)
    trainer = L.Trainer(
        accelerator=accelerator(device),
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, torch.utils.data.DataLoader(batches(shape, 1, device), batch_size=None))
    x, y = batches(shape, 1, device)[0]
    loss = torch.nn.functional.mse_loss(module(x), y)
    loss.backward()
    optimizer, guard = trainer.optimizers[0], DivergenceGuard()

    def decide() -> None:
        guard.on_before_backward(trainer, module, loss)
        guard.on_before_optimizer_step(trainer, module, optimizer)

    now = (lambda: clock(device)) if device.type == "cuda" else time.process_time
    for _ in range(guard.warmup_steps + 10):  # past the warm-up: the spike medians run too
        decide()
    start = now()
    for _ in range(calls):
        decide()
    decision = (now() - start) / calls
    start = now()
    for _ in range(calls):
        grad_norms(module)
    norms = (now() - start) / calls
    return 1e3 * norms, 1e3 * decision


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench.py guard", description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    add_device_argument(parser)
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    device = bench_device(parser, args.device)
    import logging

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    names = list(VARIANTS)
    results = {m: {v: [] for v in names} for m in args.models}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for model in args.models:
                k = repeat % len(names)
                for variant in names[k:] + names[:k]:
                    results[model][variant].append(run_once(model, variant, args.steps, args.warmup, Path(tmp), device))
    unit = "wall" if device.type == "cuda" else "CPU"
    print(f"median of {args.repeats} interleaved runs, {args.steps} timed steps each, {describe(device)}")
    print(
        f"{'model':6s} {'variant':16s} {'steps/s':>9s} {'ratio':>7s} {'+ms/step':>9s}"
        f"  (steps per {unit} second; guard vs none; guard+grad_norm vs grad_norm)"
    )
    summary: dict[str, dict[str, float]] = {}
    for model, by in results.items():
        med = {v: statistics.median(x) for v, x in by.items()}
        for variant in names:
            base = med["grad_norm"] if variant == "guard+grad_norm" else med["none"]
            extra = 1e3 * (1 / med[variant] - 1 / base)  # milliseconds the variant adds to one step
            summary[f"{model}/{variant}"] = {"steps_per_s": med[variant], "ratio": med[variant] / base, "ms": extra}
            print(f"{model:6s} {variant:16s} {med[variant]:9.1f} {med[variant] / base:7.3f} {extra:9.2f}")
    print(f"per-step {unit} ms, timed directly: pre-clip norms (shared with GradNormMonitor) | guard decision")
    for model, by in results.items():
        norms, decision = per_step_costs(model, device)
        step = 1e3 / statistics.median(by["none"])
        summary[f"{model}/direct"] = {"norms_ms": norms, "decision_ms": decision, "step_ms": step}
        print(
            f"{model:6s} norms {norms:.3f} ms ({100 * norms / step:.1f}% of a step) | decision {decision:.3f} ms "
            f"({100 * decision / step:.1f}%)"
        )
    if args.out:
        args.out.write_text(json.dumps({"device": describe(device), "steps": args.steps, "results": summary}, indent=2))
    return 0
