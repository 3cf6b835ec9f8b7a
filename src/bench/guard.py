"""What the DivergenceGuard costs: training steps/s without and with it, side by side in one run.

    python scripts/bench.py guard [--steps 250] [--repeats 5] [--models mlp rnn]

Same models, data and Trainer settings as ``bench telemetry`` (a 50-layer width-256 tanh MLP, a tanh RNN at
T = 100). The guard computes the per-layer norms (shared with GradNormMonitor when both run) and moves four
flags to the host every optimizer step — the one host sync per step that a skip/stop decision needs — so
``guard`` is measured alone, and ``guard+grad_norm`` against ``grad_norm`` to show the shared computation.
Rates are optimizer steps per CPU second of the training process (run with OMP_NUM_THREADS=1), which other
jobs on the machine do not inflate the way they inflate wall time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import lightning as L
import torch

from src.bench.telemetry import MODELS, Regression, StepTimer, batches
from src.callbacks import DivergenceGuard, GradNormMonitor

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
    return 0
