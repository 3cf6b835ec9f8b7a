"""What the DivergenceGuard costs: training steps/s without and with it, side by side in one run.

    python scripts/bench.py guard [--steps 250] [--repeats 5] [--models mlp rnn]

Same models, data and Trainer settings as ``bench telemetry`` (a 50-layer width-256 tanh MLP, a tanh RNN at
T = 100). The guard computes the per-layer norms (shared with GradNormMonitor when both run) and moves four
flags to the host every optimizer step — the one host sync per step that a skip/stop decision needs — so
``guard`` is measured alone, and ``guard+grad_norm`` against ``grad_norm`` to show the shared computation.
Rates are optimizer steps per CPU second of the training process (run with OMP_NUM_THREADS=1), which other
jobs on the machine do not inflate the way they inflate wall time. Whole runs still scatter by about a
millisecond per step, so the two parts of the guard's cost — the pre-clip norms and its own decision (flags,
medians, flight recorder, the host copy) — are also timed directly, one call after another, on real gradients.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from src.bench.telemetry import MODELS, Regression, StepTimer, batches
from src.callbacks import DivergenceGuard, GradNormMonitor
from src.callbacks.grad_stats import layer_grad_norms

VARIANTS = {
    "none": list,
    "guard": lambda: [DivergenceGuard()],
    "grad_norm": lambda: [GradNormMonitor()],
    "guard+grad_norm": lambda: [GradNormMonitor(), DivergenceGuard()],
}


def run_once(model: str, variant: str, steps: int, warmup: int, save_dir: Path) -> float:
    make, sequence, shape = MODELS[model]
    torch.manual_seed(0)
    timer = StepTimer(warmup)
    trainer = L.Trainer(
        accelerator="cpu",
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
    loader = torch.utils.data.DataLoader(batches(shape, 16, torch.device("cpu")), batch_size=None)
    trainer.fit(Regression(make(), sequence), loader)
    return timer.rates[1]  # steps per CPU second of this process: steadier than wall time on a shared machine


def per_step_costs(model: str, calls: int = 500) -> tuple[float, float]:
    """CPU ms per step of (pre-clip norms, the guard's own decision with the norms cached), in this process.

    Whole-run rates on a shared machine scatter by about a millisecond per step; the two parts of the guard's
    cost are far smaller, so they are also timed directly: the same hooks Lightning calls, on real gradients.
    """
    make, sequence, shape = MODELS[model]
    torch.manual_seed(0)
    module = Regression(make(), sequence)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, torch.utils.data.DataLoader(batches(shape, 1, torch.device("cpu")), batch_size=None))
    x, y = batches(shape, 1, torch.device("cpu"))[0]
    loss = torch.nn.functional.mse_loss(module(x), y)
    loss.backward()
    optimizer, guard = trainer.optimizers[0], DivergenceGuard()

    def decide() -> None:
        guard.on_before_backward(trainer, module, loss)
        guard.on_before_optimizer_step(trainer, module, optimizer)

    for _ in range(guard.warmup_steps + 10):  # past the warm-up: the spike medians run too
        decide()
    start = time.process_time()
    for _ in range(calls):
        decide()
    decision = (time.process_time() - start) / calls
    start = time.process_time()
    for _ in range(calls):
        layer_grad_norms(module)
    norms = (time.process_time() - start) / calls
    return 1e3 * norms, 1e3 * decision


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench.py guard", description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
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
                    results[model][variant].append(run_once(model, variant, args.steps, args.warmup, Path(tmp)))
    threads = torch.get_num_threads()
    print(f"median of {args.repeats} interleaved runs, {args.steps} timed steps each, cpu ({threads} threads)")
    print(
        f"{'model':6s} {'variant':16s} {'steps/s':>9s} {'ratio':>7s} {'+ms/step':>9s}"
        "  (guard vs none; guard+grad_norm vs grad_norm)"
    )
    for model, by in results.items():
        med = {v: statistics.median(x) for v, x in by.items()}
        for variant in names:
            base = med["grad_norm"] if variant == "guard+grad_norm" else med["none"]
            extra = 1e3 * (1 / med[variant] - 1 / base)  # CPU milliseconds the variant adds to one step
            print(f"{model:6s} {variant:16s} {med[variant]:9.1f} {med[variant] / base:7.3f} {extra:9.2f}")
    print("per-step CPU ms, timed directly: pre-clip norms (shared with GradNormMonitor) | guard decision")
    for model, by in results.items():
        norms, decision = per_step_costs(model)
        step = 1e3 / statistics.median(by["none"])
        print(
            f"{model:6s} norms {norms:.3f} ms ({100 * norms / step:.1f}% of a step) | decision {decision:.3f} ms "
            f"({100 * decision / step:.1f}%)"
        )
    return 0
