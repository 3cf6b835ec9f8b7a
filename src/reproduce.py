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


SHORT = ["data.batches_per_epoch=50", "data.val_size=512"]  # validation every 50 steps, on 512 sequences
MLP_QUICK = [*SHORT, "data.test_size=512"]
EXPERIMENTS: list[Experiment] = [
    Experiment("flagship", "The flagship pair: model=rnn with and without clipping, 3 seeds"),
    Experiment("vanishing", "The second lesson: clipping stops the NaN, not the vanishing (T = 200)"),
    Experiment("seed_chain", "Seed numbers: the scalar chain"),
    Experiment("init_study", "Initialisation: N(0,1) vs Xavier vs He", ["trainer.max_steps=300", *MLP_QUICK]),
    Experiment(
        "norm_residual", "Normalisation and residual connections at depth 50", ["trainer.max_steps=400", *MLP_QUICK]
    ),
    Experiment("activations", "Activations at depth 20", ["trainer.max_steps=400", *MLP_QUICK]),
    Experiment(
        "recurrent_adding",
        "Recurrent long dependencies: adding problem",
        ["model.hidden_size=64", "trainer.max_steps=400", *SHORT, "test=false"],
    ),
    Experiment(
        "recurrent_copy",
        "Recurrent long dependencies: copy memory",
        ["model.hidden_size=64", "data.seq_len=20", "trainer.max_steps=500", *SHORT, "test=false"],
    ),
    Experiment("clip_sweep", "Clipping threshold sweep", ["trainer.max_steps=1000", *SHORT, "test=false"]),
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
