"""Every W&B decision of a run in one place: mode, group, tags, summaries, and the run id a resume continues.

- mode: ``auto`` is online when the user is logged in to the W&B server in use (``WANDB_API_KEY``, or a netrc
  entry for ``WANDB_BASE_URL``'s host, api.wandb.ai by default), offline otherwise; ``WANDB_MODE`` always wins.
- group: the experiment's ``group``, else the multirun sweep's directory, else the run name; tags: task, model
  and clipping rule (W&B cannot group by tags).
- summaries: ``define_metric`` so the runs table compares runs by their largest pre-clip gradient norm, best
  validation loss, divergence step and share of clipped steps, not by whatever was logged last.
- resume: the run id is stored in every checkpoint (``src.callbacks.WandbRunId``); ``ckpt_path=<last.ckpt>``
  passes it back as ``id=`` (Lightning's WandbLogger always asks for ``resume="allow"``), so an online run
  continues in the same W&B run. Offline, wandb 0.31 accepts the id without looking anything up: the resumed
  part is a new ``offline-run-*-<id>`` directory under the new run directory, its ``_step`` counting from 0
  (the charts' x-axis, ``trainer/global_step``, goes on from the checkpoint), and ``wandb sync FIRST SECOND``
  uploads both parts into one run, in the order they started (``wandb sync --help``).
"""

from __future__ import annotations

import logging
import netrc
import os
import pickle
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, open_dict

from src.analysis.formatting import clip_label
from src.callbacks.wandb_run_id import WandbRunId
from src.preemption import EXIT_INTERRUPTED

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.wandb.ai"
STEP = "trainer/global_step"  # Lightning's x-axis for every metric (WandbLogger.experiment)
# metric -> the aggregates the W&B summary (and so the runs table) keeps
SUMMARIES = {
    "grad/norm_total_preclip": "max,last",
    "grad/norm_max_since_log": "max",  # the largest norm of every step, not only of logging steps
    "val/loss": "min,last",
    "train/loss": "min,last",
}
# run-level values from summary.json copied into the W&B summary at the end of a run
SUMMARY_KEYS = (
    "status",
    "steps",
    "steps_per_s",
    "samples_per_s",
    "beats_baseline",
    "solves",
    "loss_vs_baseline",
    "best_val_loss",
    "steps_to_solve",
    "baseline",
    "max_grad_norm",
    "steps_clipped",
    "clipped_fraction",
    "divergence_step",
)


def netrc_path() -> Path:
    """The netrc file wandb reads: ``$NETRC``, else ~/.netrc, else ~/_netrc."""
    if os.environ.get("NETRC"):
        return Path(os.environ["NETRC"]).expanduser()
    home = Path("~/.netrc").expanduser()
    return home if home.exists() or not Path("~/_netrc").expanduser().exists() else Path("~/_netrc").expanduser()


def logged_in() -> bool:
    """An API key in the environment, or a netrc entry for the W&B server in use (self-hosted: its host:port)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).netloc
    try:
        entry = netrc.netrc(netrc_path()).authenticators(host)
    except (FileNotFoundError, netrc.NetrcParseError):
        return False
    return entry is not None and bool(entry[2])


def wandb_mode(requested: str) -> str:
    """auto -> online when the user is logged in to W&B, offline otherwise; WANDB_MODE always wins."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if requested != "auto":
        return requested
    return "online" if logged_in() else "offline"


def default_group(cfg: DictConfig) -> str:
    """W&B group: the experiment's, else the multirun sweep's directory, else the run name."""
    if cfg.group:
        return str(cfg.group)
    if HydraConfig.initialized() and getattr(HydraConfig.get().mode, "name", None) == "MULTIRUN":
        return Path(HydraConfig.get().sweep.dir).name
    return str(cfg.name)


def default_tags(cfg: DictConfig, choices: dict[str, str]) -> list[str]:
    """W&B tags for filtering: task, model and clip label (W&B cannot group by tags; `group` does that)."""
    clip = clip_label(cfg.clip, choices.get("clipping"), cfg.clip_algorithm, choices.get("clip_preset"))
    return [t for t in (choices.get("data"), choices.get("model"), clip) if t]


def resume_id(ckpt_path: str | None) -> str | None:
    """The W&B run id stored in a checkpoint by WandbRunId (None: no checkpoint, or saved without W&B)."""
    if not ckpt_path or not Path(ckpt_path).is_file():
        return None
    try:  # tensors and plain containers only: nothing in a checkpoint runs code just to read an id
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:  # a checkpoint holding other objects: Lightning's own load decides about it
        log.warning("%s: no W&B run id readable; the resumed run starts a new W&B run", ckpt_path)
        return None
    return WandbRunId.stored_id(checkpoint)


def build_logger(cfg: DictConfig, logger_cfg: DictConfig, choices: dict[str, str]) -> WandbLogger:
    """The WandbLogger with mode, group, job type, tags and (when resuming) the run id filled in."""
    logger_cfg = logger_cfg.copy()
    with open_dict(logger_cfg):
        logger_cfg.mode = wandb_mode(logger_cfg.get("mode", "auto"))
        logger_cfg.group = logger_cfg.group or default_group(cfg)
        logger_cfg.job_type = logger_cfg.get("job_type") or choices.get("model")
        logger_cfg.tags = list(logger_cfg.tags or []) + default_tags(cfg, choices)
        if not logger_cfg.get("id"):  # an explicit logger.wandb.id wins over the checkpoint's
            logger_cfg.id = resume_id(cfg.ckpt_path)
    logger = instantiate(logger_cfg)
    # Lightning passes anonymous=None to wandb.init, which wandb 0.31 warns about (the setting does nothing)
    init = getattr(logger, "_wandb_init", None)
    if isinstance(init, dict) and "anonymous" in init and init["anonymous"] is None:
        del init["anonymous"]
    return logger


def _wandb(loggers: list[Logger]) -> list[WandbLogger]:
    return [logger for logger in loggers if isinstance(logger, WandbLogger)]


def callbacks(loggers: list[Logger]) -> list[L.Callback]:
    """The W&B run id in every checkpoint, when a W&B logger is on."""
    return [WandbRunId()] if _wandb(loggers) else []


def define_summaries(loggers: list[Logger]) -> None:
    """Summaries that make the runs table compare runs (call on rank 0, before anything is logged)."""
    for logger in _wandb(loggers):
        for name, aggregates in SUMMARIES.items():
            logger.experiment.define_metric(name, step_metric=STEP, summary=aggregates)


def record_summary(loggers: list[Logger], summary: dict[str, Any]) -> None:
    """Copy the run's verdict into the W&B summary and note where the W&B run went (rank 0 only)."""
    for logger in _wandb(loggers):
        run = logger.experiment
        for key in SUMMARY_KEYS:
            if key in summary:
                run.summary[key] = summary[key]
        if summary.get("divergence"):
            run.summary["divergence_reason"] = summary["divergence"]["reason"]
        if summary.get("status") == "interrupted":  # with the non-zero exit code of finish(): preempted, resumable
            run.mark_preempting()
        summary.update(wandb_mode=run.settings.mode, wandb_dir=str(Path(run.dir).parent), wandb_id=run.id)


def finish(status: str | None) -> None:
    """End this process's W&B run (in a finally), so that the next job of a sweep starts a new one; an
    interrupted run ends with SIGTERM's exit code, as the process does."""
    import wandb

    wandb.finish(exit_code=EXIT_INTERRUPTED if status == "interrupted" else None)
