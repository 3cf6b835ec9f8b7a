"""``train(cfg)``: one run from a composed config, top to bottom. scripts/train.py wraps it in @hydra.main; tests
call it directly.

build (src/build.py) -> fit -> evaluate on the fixed held-out sets -> record (src/summary.py: summary.json, the
W&B summary, the console) -> the W&B run finished in a finally, so the next job of a sweep starts a new run.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from omegaconf import DictConfig

from src import summary as record
from src import wandb_run
from src.build import Parts, build
from src.config.validate import validate
from src.console import print_config_tree, print_run_summary


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in sorted(metrics.items())}


def evaluate(parts: Parts, test: bool) -> dict[str, float]:
    """The final weights scored on the fixed validation set (and test set), merged over fit's last metrics."""
    trainer = parts.trainer
    metrics = _floats(trainer.callback_metrics)
    if trainer.fast_dev_run:
        return metrics
    for stage in (trainer.validate, trainer.test) if test else (trainer.validate,):
        stage(parts.module, datamodule=parts.datamodule, verbose=False)
        metrics.update(_floats(trainer.callback_metrics))
    return metrics


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, evaluate and record one run; returns the run summary (also written to summary.json)."""
    validate(cfg)
    L.seed_everything(cfg.seed, workers=True)
    parts = build(cfg)
    trainer = parts.trainer
    config = record.resolved_config(cfg, parts)
    if trainer.is_global_zero:
        print_config_tree(cfg)
        wandb_run.define_summaries(parts.loggers)
    for logger in parts.loggers:
        logger.log_hyperparams(config)
    try:
        start = time.perf_counter()
        trainer.fit(parts.module, datamodule=parts.datamodule, ckpt_path=cfg.ckpt_path)
        wall = time.perf_counter() - start
        metrics = evaluate(parts, cfg.test)
        summary = record.summarize(cfg, parts, config, wall, metrics)
        if trainer.is_global_zero:  # ranks > 0 hold Lightning's dummy W&B experiment
            wandb_run.record_summary(parts.loggers, summary)
        for logger in parts.loggers:
            logger.finalize("success")
        if trainer.is_global_zero:
            record.write(summary)
            print_run_summary(summary)
        return summary
    finally:
        wandb_run.finish()
