"""Paper-scale recurrent runs of Arjovsky, Shah & Bengio (2016), with their published statements beside them.

Adding problem (§4.2) at T = 200 and 400, LSTM vs tanh RNN, 128 hidden units; copy memory (§4.1) at T = 100,
LSTM with 40 hidden units. Their setting: RMSProp, learning rate 1e-3, decay 0.9; batch 50 for adding (their
best of 20 and 50) and 20 for copy (their code's default); gradients clipped at 1 element-wise, as their code
does (``T.clip(g, -1, 1)``: here ``clip=1.0 clip_algorithm=value``); 20,000 iterations (their code's n_iter).
Not theirs: torch's RMSprop starts its square average at 0 (their code at 1e-3, so their first steps are
smaller), gradlab's initialisations (Glorot input weights, orthogonal W_hh of gain 1, LSTM forget bias 1) and
its fixed 1024-sequence validation set (theirs: 10,000 test sequences); "beats the baseline" is gradlab's
criterion (src/analysis/criteria.py: below 0.9 x the baseline). Every setting is named on the command line, so a
changed default elsewhere cannot change these runs. Each run is ``scripts/train.py`` with ``logger=csv``,
bounded by ``trainer.max_time``; a run stopped early is reported with the steps it reached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.analysis import criteria, published
from src.analysis.runs import load_run

MAX_STEPS = 20_000  # Arjovsky et al.'s n_iter
DRY = {"hidden": 8, "seq_len": 10, "batch": 4, "steps": 4}  # a dry run: the same command lines, tiny
DRY_RUN_SIZE = f"H{DRY['hidden']}, T={DRY['seq_len']}, batch {DRY['batch']}, {DRY['steps']} steps, on the CPU"


@dataclass(frozen=True)
class PaperRun:
    """One published run. Args: task (adding | copy), seq_len (T), cell (lstm | rnn), hidden, batch, the
    published statement and whether it says the model beats the trivial baseline."""

    task: str
    seq_len: int
    cell: str
    hidden: int
    batch: int
    published: str
    expects_beat: bool

    @property
    def name(self) -> str:
        return f"{self.task}_T{self.seq_len}_{self.cell}"

    @property
    def label(self) -> str:
        model = "LSTM" if self.cell == "lstm" else "tanh RNN"
        return f"{self.task} T={self.seq_len}, {model} H{self.hidden}, batch {self.batch}"

    def overrides(self, run_dir: Path, max_time_s: int, dry_run: bool) -> list[str]:
        """scripts/train.py's command line: the paper's setting, or on a dry run the same keys at a tiny size."""
        hidden, seq_len, batch = (
            (DRY["hidden"], DRY["seq_len"], DRY["batch"]) if dry_run else (self.hidden, self.seq_len, self.batch)
        )
        lstm = self.cell == "lstm"
        model = ["model=lstm", "model.forget_bias=1.0"] if lstm else ["model=rnn", "model.nonlinearity=tanh"]
        minutes, seconds = divmod(max_time_s, 60)
        hours, minutes = divmod(minutes, 60)
        return [
            *model,
            f"model.hidden_size={hidden}",
            "model.num_layers=1",
            "model.init=xavier",
            "model.init_gain=null",
            "model.recurrent_init=orthogonal",
            "model.recurrent_gain=1.0",
            "model.head_init=default",
            f"data={self.task}",
            f"data.seq_len={seq_len}",
            f"data.batch_size={batch}",
            f"data.batches_per_epoch={2 if dry_run else 500}",  # validation every 500 steps
            f"data.val_size={16 if dry_run else 1024}",
            f"data.test_size={16 if dry_run else 1024}",
            "optimizer=rmsprop",
            "optimizer.lr=0.001",
            "optimizer.alpha=0.9",
            "optimizer.weight_decay=0.0",
            "scheduler=none",
            "clip=1.0",
            "clip_algorithm=value",
            "clipping=none",
            "callbacks=default",
            "logger=csv",
            f"trainer={'cpu' if dry_run else 'gpu'}",
            "trainer.precision=32-true",
            f"trainer.max_steps={DRY['steps'] if dry_run else MAX_STEPS}",
            f"++trainer.max_time=00:{hours:02d}:{minutes:02d}:{seconds:02d}",
            f"trainer.log_every_n_steps={1 if dry_run else 100}",
            "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false",
            "seed=0",
            f"name=paper_{self.name}",
            f"hydra.run.dir={run_dir}",
        ]


RUNS = (
    PaperRun("adding", 200, "lstm", 128, 50, published.RECURRENT_ADDING["lstm"], expects_beat=True),
    PaperRun("adding", 200, "rnn", 128, 50, published.RECURRENT_ADDING["rnn"], expects_beat=False),
    PaperRun("adding", 400, "lstm", 128, 50, published.RECURRENT_ADDING["lstm"], expects_beat=True),
    PaperRun("adding", 400, "rnn", 128, 50, published.RECURRENT_ADDING["rnn"], expects_beat=False),
    PaperRun("copy", 100, "lstm", 40, 20, published.RECURRENT_COPY["lstm"], expects_beat=True),
)


def verdict(spec: PaperRun, beats: bool, steps: int, status: str) -> str:
    """The measured result against the published statement; a run stopped short of MAX_STEPS can only be
    "not yet" where the paper says it beats the baseline."""
    if status == "diverged":
        return "differs (diverged)"
    short = steps < MAX_STEPS
    if beats == spec.expects_beat:
        return f"as published{' so far' if short and not beats else ''}"
    if short and spec.expects_beat:
        return f"not yet ({steps} of {MAX_STEPS} steps)"
    return "differs"


def result(spec: PaperRun, run_dir: Path, dry_run: bool) -> dict[str, Any]:
    """What one run measured (its summary.json and metrics.csv), with the published statement and a verdict."""
    out: dict[str, Any] = {"name": spec.name, "label": spec.label, "published": spec.published, "run_dir": str(run_dir)}
    run = load_run(run_dir)
    if run is None:
        return {**out, "status": "no summary.json", "verdict": "failed"}
    val, base, steps = run.final("val/loss"), run.baseline, int(run.summary.get("steps", 0))
    beats = val is not None and math.isfinite(val) and bool(criteria.beats(val, base))
    curve = run.curve("val/loss")
    return {
        **out,
        "status": run.status,
        "steps": steps,
        "wall_time_s": run.summary.get("wall_time_s"),
        "steps_per_s": run.summary.get("steps_per_s"),
        "val_loss": val,
        "best_val_loss": run.best("val/loss"),
        "baseline": base,
        "val_loss_vs_baseline": criteria.vs_baseline(val, base),
        "first_step_beating": next((s for s, v in curve if criteria.beats(v, base)), None),
        "first_step_solving": criteria.steps_to_solve(curve, base),
        "max_grad_norm": run.summary.get("max_grad_norm"),
        "val_curve": curve,
        "verdict": "plumbing only (dry run)" if dry_run else verdict(spec, beats, steps, run.status),
    }
