"""What the DivergenceGuard costs: training steps/s without and with it, side by side in one run.

    python scripts/bench.py guard [--steps 250] [--repeats 5] [--models mlp rnn rnn_large] [--device cpu|cuda]

Same models, data and Trainer settings as ``bench telemetry``. The guard reads the per-layer norms (shared with
GradNormMonitor when both run) and moves its flags to the host every optimizer step, the one host sync per step
that a skip/stop decision needs: ``guard`` is measured alone, and ``guard+grad_norm`` against ``grad_norm``.
Rates are steps per CPU second of the process (wall seconds on CUDA, where GPU work is not CPU time); whole runs
scatter by about a millisecond per step, so the two parts of the guard's cost — the pre-clip norms and its own
decision — are also timed directly, one call after another, on real gradients.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from src.bench._device import clock
from src.bench._harness import StepTimer, Tables, interleaved, run
from src.bench.telemetry import DEFAULT_MODELS, MODELS, batches, fit, regression
from src.callbacks import DivergenceGuard, GradNormMonitor
from src.grad_norms import grad_norms

DEFAULTS = {"steps": 250, "warmup": 10, "repeats": 5}
VARIANTS = {
    "none": list,
    "guard": lambda: [DivergenceGuard()],
    "grad_norm": lambda: [GradNormMonitor()],
    "guard+grad_norm": lambda: [GradNormMonitor(), DivergenceGuard()],
}


def run_once(model: str, variant: str, args: argparse.Namespace) -> float:
    timer = StepTimer(args.warmup)
    fit(regression(model), model, [timer, *VARIANTS[variant]()], args.warmup + args.steps, args.device)
    # the CPU: steps per CPU second of this process, steadier than wall time on a shared machine
    return timer.rates[0] if args.device.type == "cuda" else timer.rates[1]


def per_step_costs(model: str, device: torch.device, calls: int = 500) -> tuple[float, float]:
    """ms per step of (pre-clip norms, the guard's own decision with the norms cached): the same hooks Lightning
    calls, on real gradients."""
    module = regression(model)
    trainer = fit(module, model, [], 1, device)
    x, y = batches(MODELS[model][2], 1, device)[0]
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=list(MODELS))


def measure(args: argparse.Namespace) -> Tables:
    results = interleaved(
        args.repeats, args.models, list(VARIANTS), lambda m, v: run_once(m, v, args), lambda sps: f"{sps:.1f} steps/s"
    )
    rows, direct = [], []
    for model in args.models:
        med = {v: statistics.median(results[(model, v)]) for v in VARIANTS}
        for variant in VARIANTS:
            base = med["grad_norm"] if variant == "guard+grad_norm" else med["none"]
            extra = 1e3 * (1 / med[variant] - 1 / base)  # milliseconds the variant adds to one step
            row = {"model": model, "variant": variant, "steps_per_s": med[variant], "ratio": med[variant] / base}
            rows.append({**row, "ms": extra})
        norms, decision = per_step_costs(model, args.device)
        step = 1e3 / med["none"]
        direct.append({"model": model, "norms_ms": norms, "decision_ms": decision, "step_ms": step})
        direct[-1].update(norms_share=norms / step, decision_share=decision / step)
    return {"runs": rows, "direct": direct}


def main(argv: list[str]) -> int:
    return run(sys.modules[__name__], argv)
