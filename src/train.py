"""``train(cfg)``: one run from a composed config, top to bottom. scripts/train.py wraps it in @hydra.main; tests
call it directly.

build (src/build.py) -> fit -> evaluate on the fixed held-out sets -> record (src/summary.py: summary.json, the
W&B summary, the console) -> the W&B run finished in a finally, so the next job of a sweep starts a new run.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from src import wandb_run
from src.build import Parts, build
from src.config.validate import validate
from src.console import print_config_tree, print_run_summary
from src.preemption import was_interrupted
from src.summary import resolved_config, summarize, write_summary


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in sorted(metrics.items())}


def announce(cfg: DictConfig, parts: Parts) -> dict[str, Any]:
    """Print the config tree and hand the resolved config to every logger; returns that config."""
    config = resolved_config(cfg, parts)
    if parts.trainer.is_global_zero:
        print_config_tree(cfg)
        wandb_run.define_summaries(parts.loggers)
    for logger in parts.loggers:
        logger.log_hyperparams(config)
    return config


def fit(parts: Parts, ckpt_path: str | None) -> float:
    """Train (resuming from ``ckpt_path`` if given); returns the wall time of the fit. A SIGTERM ends it at a
    step boundary with last.ckpt saved (src/preemption.py): the run goes on to be recorded as interrupted."""
    start = time.perf_counter()
    with contextlib.suppress(SIGTERMException):
        parts.trainer.fit(parts.module, datamodule=parts.datamodule, ckpt_path=ckpt_path)
    return time.perf_counter() - start


def evaluate(parts: Parts, test: bool) -> dict[str, float]:
    """The final weights scored on the fixed validation set (and test set), merged over fit's last metrics;
    skipped after fast_dev_run, and from the SIGTERM on (in training or in an evaluation's last batch)."""
    trainer = parts.trainer
    metrics = _floats(trainer.callback_metrics)
    for stage in (trainer.validate, trainer.test) if test else (trainer.validate,):
        if trainer.fast_dev_run or was_interrupted(trainer):
            break
        with contextlib.suppress(SIGTERMException):  # a SIGTERM in the last batch: recorded as interrupted
            stage(parts.module, datamodule=parts.datamodule, verbose=False)
        metrics.update(_floats(trainer.callback_metrics))
    return metrics


def record(
    cfg: DictConfig, parts: Parts, config: dict[str, Any], wall: float, metrics: dict[str, float]
) -> dict[str, Any]:
    """The run summary: into the W&B summary, summary.json and the console (rank 0); the loggers finalized."""
    summary = summarize(cfg, parts, config, wall, metrics)
    is_global_zero = parts.trainer.is_global_zero
    if is_global_zero:  # ranks > 0 hold Lightning's dummy W&B experiment
        wandb_run.record_summary(parts.loggers, summary)
    for logger in parts.loggers:
        logger.finalize("success")
    if is_global_zero:
        write_summary(summary)
        print_run_summary(summary)
    return summary


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, evaluate and record one run; returns the run summary (also written to summary.json)."""
    validate(cfg)
    L.seed_everything(cfg.seed, workers=True)
    parts = build(cfg)
    config = announce(cfg, parts)
    summary: dict[str, Any] = {}
    try:
        wall = fit(parts, cfg.ckpt_path)
        metrics = evaluate(parts, cfg.test)
        summary = record(cfg, parts, config, wall, metrics)
        return summary
    finally:
        wandb_run.finish(summary.get("status"))
