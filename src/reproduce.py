"""The reproduction suite: one experiment config each (conf/experiment/), run as a Hydra multirun.

The experiment configs hold the full-size settings (``python scripts/train.py -m experiment=NAME``). The
``quick`` scale shrinks steps, widths and sequence lengths so that the whole suite fits in 45 minutes on a
2-core CPU; ``paper`` runs the configs as written.

Experiments run ``jobs`` at a time (``run_suite``), each its own ``scripts/train.py -m`` process with one
torch thread, longest first onto whichever lane frees up: one lane per core, no job of a multirun waits
for another experiment's, and the report reads each experiment's sweep directory as if it had run alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from src.config import CONF_DIR

REPO = CONF_DIR.parent

# every scale: the multirun prints one line per job instead of a progress bar
ALWAYS = ["callbacks.progress_bar=null", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
# quick scale: local CSV only (W&B offline start-up costs seconds per run), no histograms or checkpoints
# (the report reads summary.json and csv/metrics.csv only)
QUICK_COMMON = ["logger=csv", "callbacks.histograms=null", "callbacks.model_checkpoint=null"]


@dataclass(frozen=True)
class Experiment:
    """One entry of the suite.

    Args:
        name: the config conf/experiment/NAME.yaml.
        title: the report's section title.
        quick: overrides of the quick scale, on top of the config.
        cost: relative single-lane cost at the quick scale; only orders the pool (longest first).
    """

    name: str
    title: str
    quick: list[str] = field(default_factory=list)
    cost: float = 1.0


MLP_QUICK = ["trainer.max_steps=1000"]  # the feed-forward studies' criteria read step 0, divergence and the final loss

EXPERIMENTS: list[Experiment] = [
    Experiment("flagship", "The flagship pair: model=rnn with and without clipping, 3 seeds", cost=150),
    Experiment("vanishing", "The second lesson: clipping stops the NaN, not the vanishing (T = 200)", cost=330),
    Experiment(
        "clip_length", "Clipping matters more as the sequence grows (T = 10 against the flagship's 50)", cost=60
    ),
    Experiment("clip_sweep", "The clipping threshold: 0.05x to 10x the mean norm", cost=420),
    Experiment("lr_clip", "The learning rate with and without clipping", cost=250),
    Experiment("weight_decay", "Weight decay on the exploding RNN", cost=90),
    Experiment("early_stopping", "Early stopping on a diverging run", cost=130),
    Experiment("gated_adding", "LSTM and GRU against the tanh RNN: adding, T = 100", cost=1050),
    Experiment("copy_memory", "Copy memory: recalled symbols against the memoryless strategy", cost=300),
    Experiment("seed_chain", "Seed numbers: the scalar chain", cost=50),
    Experiment(
        "init_study", "Initialisation: N(0,1) vs Xavier vs He, depths 5-50", ["trainer.max_steps=300"], cost=220
    ),
    Experiment("activations", "Activations at variance-preserving gains", MLP_QUICK, cost=150),
    Experiment("norm_residual", "Normalisation and residual connections at depth 50", MLP_QUICK, cost=150),
    Experiment("bn_small_batch", "BatchNorm at batch 4 against LayerNorm", MLP_QUICK, cost=60),
    Experiment("bn_lr", "BatchNorm and a 10x learning rate", MLP_QUICK, cost=40),
    Experiment("optimizers", "Adaptive optimisers from a bad initialisation", MLP_QUICK, cost=60),
    Experiment("batch_size", "Batch size and the gradient norm's variability", MLP_QUICK, cost=40),
    Experiment("transformer_init_profile", "Transformer gradients at initialisation: Post-LN vs Pre-LN", cost=30),
    Experiment(
        "transformer_warmup",
        "Transformer warm-up: Post-LN vs Pre-LN at one learning rate",
        ["trainer.max_steps=500"],
        cost=300,
    ),
    Experiment(
        "transformer_lr_sweep",
        "Attention-logit growth: an lr sweep with and without qk_norm",
        ["trainer.max_steps=600"],
        cost=400,
    ),
    Experiment("transformer_fp16", "fp16 overflow: 16-mixed vs bf16-mixed", ["trainer.max_steps=200"], cost=150),
]
BY_NAME = {e.name: e for e in EXPERIMENTS}


def command(experiment: Experiment, sweep_dir: Path, scale: str, extra: list[str]) -> list[str]:
    """The ``scripts/train.py -m`` command line of one experiment at one scale."""
    overrides = ALWAYS + ((QUICK_COMMON + experiment.quick) if scale == "quick" else [])
    return [
        sys.executable,
        str(REPO / "scripts" / "train.py"),
        "-m",
        f"experiment={experiment.name}",
        *overrides,
        *extra,
        f"hydra.sweep.dir={sweep_dir}",
    ]


def run_experiment(
    experiment: Experiment, root: Path, scale: str, extra: list[str] | None = None, threads: int = 1
) -> float:
    """Run one experiment's sweep into ``root/NAME``; returns its wall time and records it in timing.json.

    ``threads`` sets OMP_NUM_THREADS: these models are too small to gain from intra-op threads, and on a shared
    CPU two spinning OpenMP threads per process are ruinous (measured here: the default run at 43 steps/s with
    one thread, 1.2 steps/s with two, while other processes held the cores).
    """
    sweep_dir = root / experiment.name
    cmd = command(experiment, sweep_dir, scale, extra or [])
    print(f"[reproduce] {experiment.name}: {' '.join(cmd[2:])}", flush=True)
    start = time.perf_counter()
    log = root / f"{experiment.name}.log"
    root.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - start
    record_timing(root, experiment.name, wall, proc.returncode, scale, threads)
    status = "ok" if proc.returncode == 0 else f"exit {proc.returncode} (see {log})"
    print(f"[reproduce] {experiment.name}: {wall:.0f} s, {status}", flush=True)
    return wall


_TIMING_LOCK = threading.Lock()  # lanes finish concurrently; timing.json is read-modify-write


def record_timing(root: Path, name: str, wall: float, returncode: int, scale: str, threads: int) -> None:
    with _TIMING_LOCK:
        path = root / "timing.json"
        timing = json.loads(path.read_text()) if path.exists() else {}
        timing[name] = {"wall_s": wall, "returncode": returncode, "scale": scale, "threads": threads}
        path.write_text(json.dumps(timing, indent=2))


def run_suite(
    experiments: list[Experiment],
    root: Path,
    scale: str,
    extra: list[str] | None = None,
    threads: int = 1,
    jobs: int = 2,
) -> float:
    """Run the experiments ``jobs`` at a time, longest first; returns the suite's elapsed wall time.

    The elapsed time (what ``make reproduce`` takes) is recorded in timing.json under ``_suite`` beside each
    experiment's own wall time, whose sum is the single-lane time.
    """
    start = time.perf_counter()
    order = sorted(experiments, key=lambda e: -e.cost)
    print(f"[reproduce] {len(order)} experiments, {jobs} at a time, scale {scale}: {root}", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for future in [pool.submit(run_experiment, e, root, scale, extra, threads) for e in order]:
            future.result()
    elapsed = time.perf_counter() - start
    with _TIMING_LOCK:
        path = root / "timing.json"
        timing = json.loads(path.read_text()) if path.exists() else {}
        timing["_suite"] = {"elapsed_s": elapsed, "jobs": jobs, "scale": scale, "threads": threads}
        path.write_text(json.dumps(timing, indent=2))
    return elapsed
