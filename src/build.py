"""How a config becomes a Trainer: the data, network, LightningModule, loggers, callbacks and Trainer of a run.

Every object is its config group's ``_target_`` (conf/<group>/*.yaml) built by Hydra's ``instantiate``; this
module adds only what YAML cannot say: the network's sizes come from the task, the W&B logger's mode, group
and tags from src/wandb_run.py, and the callbacks every run needs whatever ``callbacks=`` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar, RichModelSummary
from lightning.pytorch.loggers import Logger
from lightning.pytorch.plugins.precision import MixedPrecision
from omegaconf import DictConfig

from src import wandb_run
from src.callbacks import AttentionMonitor, GradScalerMonitor
from src.callbacks.attention import attention_modules
from src.callbacks.group import group_callbacks
from src.data.datamodule import SyntheticDataModule
from src.data.task import Task
from src.models.module import GradLabModule


@dataclass
class Parts:
    """The objects of one run, as ``build(cfg)`` made them.

    Args:
        datamodule: the task's SyntheticDataModule (``datamodule.task`` holds its sizes and baseline).
        module: the GradLabModule around the network.
        loggers: the configured loggers (W&B settings filled in).
        callbacks: the configured callbacks, then the ones every run needs.
        trainer: the Lightning Trainer holding both (those Lightning does not look up by type in one
            ``src.callbacks.group.CallbackGroup``).
        choices: Hydra's group choices (``model: rnn``, ...); empty when composed outside Hydra's main.
    """

    datamodule: SyntheticDataModule
    module: GradLabModule
    loggers: list[Logger]
    callbacks: list[L.Callback]
    trainer: L.Trainer
    choices: dict[str, str]

    @property
    def task(self) -> Task:
        return self.datamodule.task


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
    """The LightningModule: the network, optimizer/scheduler factories, the clipping rule and the loss."""
    network = build_network(cfg.model, task)
    optimizer = instantiate(cfg.optimizer)
    scheduler = instantiate(cfg.scheduler) if cfg.scheduler else None
    clipper = instantiate(cfg.clipping) if cfg.clipping else None
    loss = cfg.loss
    return GradLabModule(
        network, task, optimizer, scheduler, clipper=clipper, grad_penalty=loss.grad_penalty, z_loss=loss.z_loss
    )


def build_loggers(cfg: DictConfig, choices: dict[str, str]) -> list[Logger]:
    return [
        wandb_run.build_logger(cfg, node, choices) if node._target_.endswith("WandbLogger") else instantiate(node)
        for node in (cfg.logger or {}).values()
    ]


def can_record(callback: L.Callback, cfg: DictConfig, module: L.LightningModule) -> bool:
    """False for a monitor with nothing to record in this run: attention statistics of a network without
    attention, the loss scale without a GradScaler. Lightning calls every hook of every callback on every step
    whether it is overridden or not, so a callback that can never act still costs each step its dispatch."""
    if isinstance(callback, AttentionMonitor):
        return bool(attention_modules(module))
    if isinstance(callback, GradScalerMonitor):
        return str(cfg.trainer.get("precision")) in ("16-mixed", "16")  # the only precision with a GradScaler
    return True


def build_callbacks(cfg: DictConfig, loggers: list[Logger], module: L.LightningModule) -> list[L.Callback]:
    """The configured callbacks (one set to null, ``callbacks.histograms=null``, is off) that can record
    something in this run (``can_record``), then the learning rate when a scheduler changes it and the W&B run
    id for resuming."""
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c is not None]
    callbacks = [c for c in callbacks if can_record(c, cfg, module)]
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a progress-bar callback then
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    if cfg.scheduler and loggers:  # every optimizer step's learning rate, at the loggers' interval
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    return callbacks + wandb_run.callbacks(loggers)


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


def build(cfg: DictConfig) -> Parts:
    """Every object of the run, from a validated config."""
    choices = hydra_choices()
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule.task)
    loggers = build_loggers(cfg, choices)
    callbacks = build_callbacks(cfg, loggers, module)
    trainer_args = cpu_fp16_precision(cfg.trainer)
    on_trainer = callbacks
    if not cfg.trainer.get("profiler"):  # a profiler (debug=profiler) times each callback on its own
        # one dispatch per hook for the grouped callbacks, Lightning's model summary among them: the Trainer
        # would add its own beside them, dispatched on every step though it acts once, at fit start
        summary = [RichModelSummary()] if cfg.trainer.get("enable_model_summary", True) else []
        on_trainer = group_callbacks([*callbacks, *summary])
        trainer_args["enable_model_summary"] = False
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=on_trainer, **trainer_args)
    return Parts(datamodule, module, loggers, callbacks, trainer, choices)
