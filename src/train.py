"""``train(cfg)``: one run from a composed config. scripts/train.py wraps it in @hydra.main; tests call it.

Order: validate -> seed -> build data, network, module, loggers, callbacks, trainer -> fit -> test ->
summary.json + W&B summary -> ``wandb.finish()`` in a finally, so the next job of a sweep starts a new run.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from src import wandb_run
from src.analysis import criteria
from src.callbacks import WandbRunId, collect_run_totals
from src.config.validate import validate
from src.console import print_config_tree, print_run_summary
from src.data.task import Task
from src.environment import run_environment
from src.grad_norms import layers
from src.models.module import GradLabModule
from src.preemption import EXIT_INTERRUPTED, was_interrupted


def hydra_choices() -> dict[str, str]:
    if not HydraConfig.initialized():
        return {}
    return {str(k): str(v) for k, v in HydraConfig.get().runtime.choices.items() if v is not None}


def build_network(model_cfg: DictConfig, task: Task) -> torch.nn.Module:
    """Instantiate the network with the task's sizes (feed-forward nets see the flattened sequence)."""
    sequence_model = getattr(get_class(model_cfg._target_), "sequence_model", False)
    sizes: dict[str, Any] = {
        "input_size": task.input_size if sequence_model else task.input_size * task.seq_len,
        "output_size": task.output_size,
    }
    if sequence_model:
        sizes["output"] = task.output
    return instantiate(model_cfg, **sizes)


def build_module(cfg: DictConfig, task: Task) -> GradLabModule:
    """The run's LightningModule: the network, optimizer/scheduler factories, the clipping rule and the loss."""
    network = build_network(cfg.model, task)
    optimizer = instantiate(cfg.optimizer)
    scheduler = instantiate(cfg.scheduler) if cfg.scheduler else None
    clipper = instantiate(cfg.clipping) if cfg.clipping else None
    loss = cfg.loss
    return GradLabModule(
        network, task, optimizer, scheduler, clipper=clipper, grad_penalty=loss.grad_penalty, z_loss=loss.z_loss
    )


def cpu_fp16_precision(trainer_cfg: DictConfig) -> dict[str, Any]:
    """Trainer arguments that keep ``precision=16-mixed`` fp16 on a CPU.

    Lightning swaps 16-mixed for bf16-mixed on CPU with only a warning, which would turn a study of fp16
    overflow into a bf16 run; instead run fp16 autocast with a CPU GradScaler (Lightning's MixedPrecision
    plugin with torch.amp.GradScaler("cpu"), default init scale 2^16). Empty elsewhere.
    """
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    on_cpu = accelerator == "cpu" or (
        accelerator == "auto" and not torch.cuda.is_available() and not torch.backends.mps.is_available()
    )
    if str(trainer_cfg.get("precision")) not in ("16-mixed", "16") or not on_cpu:  # "16": Lightning's alias
        return {}
    return {"precision": None, "plugins": [MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))]}


def build_loggers(cfg: DictConfig) -> list[Logger]:
    loggers: list[Logger] = []
    for logger_cfg in (cfg.logger or {}).values():
        if logger_cfg._target_.endswith("WandbLogger"):
            loggers.append(wandb_run.quiet(instantiate(wandb_run.logger_config(cfg, logger_cfg, hydra_choices()))))
        else:
            loggers.append(instantiate(logger_cfg))
    return loggers


def plumbing_callbacks(cfg: DictConfig, loggers: list[Logger]) -> list[L.Callback]:
    """Callbacks the run needs whatever ``callbacks=`` says: the learning rate when it changes, the W&B run id."""
    out: list[L.Callback] = []
    if cfg.scheduler and loggers:  # every optimizer step's learning rate, at the loggers' interval
        out.append(LearningRateMonitor(logging_interval="step"))
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        out.append(WandbRunId())
    return out


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in sorted(metrics.items())}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, evaluate and record one run; returns the run summary (also written to summary.json)."""
    validate(cfg)
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.output_dir)

    datamodule = instantiate(cfg.data)
    task: Task = datamodule.task
    module = build_module(cfg, task)
    loggers = build_loggers(cfg)
    # a callback set to null on the command line (callbacks.histograms=null) is switched off
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c is not None]
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a progress-bar callback then
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    callbacks += plumbing_callbacks(cfg, loggers)
    trainer: L.Trainer = instantiate(
        cfg.trainer, logger=loggers or False, callbacks=callbacks, **cpu_fp16_precision(cfg.trainer)
    )

    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(config, dict)
    config["choices"] = hydra_choices()
    config["hardware"] = run_environment(trainer)
    if trainer.is_global_zero:
        print_config_tree(cfg)
    for logger in loggers:
        if isinstance(logger, WandbLogger) and trainer.is_global_zero:
            wandb_run.define_summaries(logger)
        logger.log_hyperparams(config)

    start = time.perf_counter()
    status = None
    try:
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
            wall = time.perf_counter() - start
            metrics = _floats(trainer.callback_metrics)
            if not trainer.fast_dev_run and not was_interrupted(trainer):  # score the final weights, held-out sets
                trainer.validate(module, datamodule=datamodule, verbose=False)
                metrics.update(_floats(trainer.callback_metrics))
                if cfg.test and not was_interrupted(trainer):  # a SIGTERM in validation's last batch
                    trainer.test(module, datamodule=datamodule, verbose=False)
                    metrics.update(_floats(trainer.callback_metrics))
        except SIGTERMException:  # Lightning stopped at a step boundary; last.ckpt is saved (src/preemption.py)
            wall, metrics = time.perf_counter() - start, _floats(trainer.callback_metrics)
        summary = run_summary(cfg, trainer, task, run_dir, wall, metrics, module.val_curve)
        summary.update(collect_run_totals(callbacks))  # a guard's divergence overrides the status
        summary["config"] = config
        summary["hardware"] = config["hardware"]
        # network order of the grad/layer/* names: the CSV sorts its columns, compare.py plots in this order
        summary["layer_order"] = [layer.name for layer in layers(module)]
        summary["samples_per_s"] = (summary["steps_per_s"] or 0) * cfg.data.batch_size * trainer.world_size
        if summary["status"] == "interrupted":
            summary["resume_from"] = _last_checkpoint(callbacks)
        status = summary["status"]
        _finish_loggers(loggers, summary, trainer.is_global_zero)
        if trainer.is_global_zero:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
            print_run_summary(summary)
        return summary
    finally:
        import wandb

        wandb.finish(exit_code=EXIT_INTERRUPTED if status == "interrupted" else None)


def _last_checkpoint(callbacks: list[Any]) -> str | None:
    """Where an interrupted run resumes from: the checkpoint callback's last.ckpt, when it wrote one."""
    for cb in callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.last_model_path and Path(cb.last_model_path).exists():
            return str(cb.last_model_path)
    return None


def run_status(trainer: L.Trainer) -> str:
    """completed: the step or epoch budget was used up; stopped_early: something set should_stop before that;
    interrupted: SIGTERM stopped the training or its final evaluation (src/preemption.py).

    (A guard divergence overrides this with "diverged" through its run_totals.)
    """
    if was_interrupted(trainer):
        return "interrupted"
    if trainer.max_steps >= 0 and trainer.global_step >= trainer.max_steps:
        return "completed"
    max_epochs = trainer.max_epochs
    if max_epochs is not None and max_epochs >= 0 and trainer.current_epoch >= max_epochs:
        return "completed"
    return "stopped_early" if trainer.should_stop or trainer.interrupted else "completed"


def run_summary(
    cfg: DictConfig,
    trainer: L.Trainer,
    task: Task,
    run_dir: Path,
    wall: float,
    metrics: dict[str, float],
    curve: list[tuple[int, float]],
) -> dict[str, Any]:
    """The run's record; ``curve`` is the (step, val/loss) of every validation during fit."""
    val = metrics.get("val/loss")
    baseline = task.baseline if math.isfinite(task.baseline) else None
    return {
        "status": run_status(trainer),
        "name": str(cfg.name),
        "run_dir": str(run_dir),
        "choices": hydra_choices(),
        "task": task.name,
        "seq_len": task.seq_len,
        "seed": int(cfg.seed),
        "clip": cfg.clip,
        "clipping": hydra_choices().get("clipping", "none"),
        "clip_algorithm": str(cfg.clip_algorithm.value if hasattr(cfg.clip_algorithm, "value") else cfg.clip_algorithm),
        "steps": int(trainer.global_step),
        "wall_time_s": wall,
        "steps_per_s": trainer.global_step / wall if wall > 0 else None,
        "metrics": metrics,
        "baseline": baseline,
        "baseline_rule": task.baseline_rule,
        "loss_vs_baseline": criteria.vs_baseline(val, baseline),
        "beats_baseline": criteria.beats(val, baseline),
        "solves": criteria.solves(val, baseline),
        "best_val_loss": min((v for _, v in curve if math.isfinite(v)), default=None),
        "steps_to_solve": criteria.steps_to_solve(curve, baseline),
    }


def _finish_loggers(loggers: list[Logger], summary: dict[str, Any], is_global_zero: bool) -> None:
    steps = summary.get("optimizer_steps") or summary.get("steps")
    if summary.get("steps_clipped") is not None and steps:
        summary["clipped_fraction"] = summary["steps_clipped"] / steps
    summary.setdefault("divergence_step", None)
    for logger in loggers:
        # ranks > 0 hold Lightning's dummy experiment: only rank 0 writes the W&B summary
        if is_global_zero and isinstance(logger, WandbLogger):
            wandb_run.record_summary(logger, summary)
        logger.finalize("success")
