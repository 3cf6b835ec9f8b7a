"""The record of one run: the dict train(cfg) returns and writes as summary.json.

Its keys are the interface of everything that reads runs back (src/analysis/, the W&B summary, the console).
Callbacks contribute through one method, ``run_totals() -> dict`` (GradNormMonitor: the largest pre-clip
norm and clipped steps; DivergenceGuard: its events, skips and the divergence, which sets status "diverged").
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from src.analysis import criteria
from src.build import Parts
from src.callbacks import collect_run_totals
from src.environment import run_environment
from src.grad_norms import layers
from src.preemption import was_interrupted


def resolved_config(cfg: DictConfig, parts: Parts) -> dict[str, Any]:
    """The config as the loggers and summary.json record it: resolved, enums as strings, with the group choices
    and the hardware the run is on."""
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(config, dict)
    return {**config, "choices": parts.choices, "hardware": run_environment(parts.trainer)}


def run_status(trainer: L.Trainer) -> str:
    """completed: the step or epoch budget was used up; stopped_early: something set should_stop before that;
    interrupted: SIGTERM stopped the training or its final evaluation (src/preemption.py).

    (A guard divergence overrides this with "diverged" through its run_totals().)
    """
    if was_interrupted(trainer):
        return "interrupted"
    if trainer.max_steps >= 0 and trainer.global_step >= trainer.max_steps:
        return "completed"
    max_epochs = trainer.max_epochs
    if max_epochs is not None and max_epochs >= 0 and trainer.current_epoch >= max_epochs:
        return "completed"
    return "stopped_early" if trainer.should_stop or trainer.interrupted else "completed"


def summarize(
    cfg: DictConfig, parts: Parts, config: dict[str, Any], wall: float, metrics: dict[str, float]
) -> dict[str, Any]:
    """The run's record; ``metrics`` are the final ones (after the last validation and test)."""
    trainer, task = parts.trainer, parts.task
    val = metrics.get("val/loss")
    baseline = task.baseline if math.isfinite(task.baseline) else None
    curve = parts.module.val_curve  # (step, val/loss) of every validation during fit
    steps_per_s = trainer.global_step / wall if wall > 0 else None
    summary = {
        "status": run_status(trainer),
        "name": str(cfg.name),
        "run_dir": str(Path(cfg.paths.output_dir)),
        "choices": parts.choices,
        "task": task.name,
        "seq_len": task.seq_len,
        "seed": int(cfg.seed),
        "clip": cfg.clip,
        "clipping": parts.choices.get("clipping", "none"),
        "clip_algorithm": str(getattr(cfg.clip_algorithm, "value", cfg.clip_algorithm)),
        "steps": int(trainer.global_step),
        "wall_time_s": wall,
        "steps_per_s": steps_per_s,
        "metrics": metrics,
        "baseline": baseline,
        "baseline_rule": task.baseline_rule,
        "loss_vs_baseline": criteria.vs_baseline(val, baseline),
        "beats_baseline": criteria.beats(val, baseline),
        "solves": criteria.solves(val, baseline),
        "best_val_loss": min((v for _, v in curve if math.isfinite(v)), default=None),
        "steps_to_solve": criteria.steps_to_solve(curve, baseline),
        **collect_run_totals(parts.callbacks),
        "config": config,
        "hardware": config["hardware"],
        # network order of the grad/layer/* names: the CSV sorts its columns, compare.py plots in this order
        "layer_order": [layer.name for layer in layers(parts.module)],
        "samples_per_s": (steps_per_s or 0) * cfg.data.batch_size * trainer.world_size,
    }
    if summary["status"] == "interrupted":  # where to resume: Lightning's checkpoint callback's last.ckpt
        last = getattr(trainer.checkpoint_callback, "last_model_path", None)
        summary["resume_from"] = str(last) if last and Path(last).exists() else None
    steps = summary.get("optimizer_steps") or summary["steps"]
    if summary.get("steps_clipped") is not None and steps:
        summary["clipped_fraction"] = summary["steps_clipped"] / steps
    summary.setdefault("divergence_step", None)
    return summary


def write_summary(summary: dict[str, Any]) -> Path:
    """summary.json in the run directory (rank 0 only)."""
    path = Path(summary["run_dir"]) / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=str))
    return path
