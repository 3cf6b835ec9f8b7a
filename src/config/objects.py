"""Build the config's objects once, writing nothing, so their own argument checks run before any output.

validate.py checks types, ranges and which keys a ``_target_`` accepts; the *values* are each class's
business — DivergenceGuard refuses ``on_spike=explode``, ModelCheckpoint ``save_top_k=-2``, torch's Adam a beta
of 1.5, StepLR a ``step_size`` of 0 (at its first step), Lightning's Trainer an accelerator this machine lacks
— but a run builds them only after Hydra has made its run directory. Here every object is built from its
resolved config the way a run builds it (optimizer and LR scheduler against a dummy parameter, one scheduler
step included), and a refusal becomes one line naming the key: the key whose removal (back to the class's
default) lets the object build. The message carries the class's own words for what it accepts, so the
allowed values come from the class, not from a second list kept here.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any, get_args

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from src.build import build_network
from src.config.errors import ConfigError


def _reason(err: BaseException) -> str:
    """The library's own message, on one line (Hydra's wrapper and Lightning's multi-line hints dropped)."""
    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    text = str(err).strip() or type(err).__name__
    return " ".join(text.splitlines()[0].split()).rstrip(".")


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()  # as it was typed: YAML's true/false
    return "null" if value is None else str(value)


def _try(build: Callable[[dict[str, Any]], Any], node: dict[str, Any]) -> BaseException | None:
    try:
        build(node)
    except Exception as err:  # any refusal of the class is bad input here
        return err
    return None


def build_checked(node: dict[str, Any], path: str, build: Callable[[dict[str, Any]], Any]) -> Any:
    """``build(node)``; on failure raise ConfigError naming the key of ``path`` the class refused."""
    try:
        return build(node)
    except Exception as error:  # any refusal of the class is bad input here
        err = error
    target = str(node.get("_target_", path)).rsplit(".", 1)[-1]
    reason = _reason(err)
    for key in [k for k in node if not str(k).startswith("_")]:
        if _try(build, {k: v for k, v in node.items() if k != key}) is None:  # the class's default builds
            if reason.startswith(f"{key}="):  # the class already says "key=value: expected ..."
                raise ConfigError(f"{path}.{reason}") from None
            raise ConfigError(f"{path}.{key}={_shown(node[key])} is not allowed; {target} says: {reason}") from None
    given = ", ".join(f"{path}.{k}={_shown(v)}" for k, v in node.items() if not str(k).startswith("_"))
    raise ConfigError(f"{path} ({target}) cannot be built from {given or 'its defaults'}: {reason}") from None


def _has_target(value: Any) -> bool:
    if isinstance(value, dict):
        return "_target_" in value or any(_has_target(v) for v in value.values())
    return isinstance(value, list) and any(_has_target(v) for v in value)


def _instantiate(node: dict[str, Any], **kwargs: Any) -> Any:
    """What ``hydra.utils.instantiate`` makes of a resolved node (called directly when nothing is nested: the
    same call without OmegaConf's cost: every check builds every object, and a refusal builds it once per key)."""
    params = {k: v for k, v in node.items() if not str(k).startswith("_")}
    if _has_target(params) or set(node) - set(params) - {"_target_", "_partial_"}:
        return instantiate(OmegaConf.create(node), **kwargs)
    target = get_object(node["_target_"])
    if node.get("_partial_"):
        return functools.partial(target, **params, **kwargs)
    return target(**params, **kwargs)


def resolved(cfg: DictConfig, key: str) -> Any:
    """A config node as plain Python (interpolations resolved, enums as strings)."""
    node = OmegaConf.select(cfg, key)
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return node


def _check_optimizer_and_scheduler(cfg: DictConfig) -> None:
    params = [torch.nn.Parameter(torch.zeros(1))]

    def optimizer(node: dict[str, Any]) -> torch.optim.Optimizer:
        return _instantiate(node)(params=params)

    opt_cfg = resolved(cfg, "optimizer")
    build_checked(opt_cfg, "optimizer", optimizer)
    sched_cfg = resolved(cfg, "scheduler")
    if not sched_cfg:
        return

    def scheduler(node: dict[str, Any]) -> None:
        opt = optimizer(opt_cfg)
        sched = _instantiate(node)(optimizer=opt)
        opt.step()  # no gradients: changes nothing, but keeps torch from warning about the order below
        sched.step()  # some arguments (StepLR's step_size=0) only fail when the schedule is evaluated

    build_checked(sched_cfg, "scheduler", scheduler)


def _wandb_modes() -> tuple[str, ...]:
    from wandb.sdk.wandb_settings import Settings

    return ("auto", *get_args(Settings.model_fields["mode"].annotation))


def _check_wandb(node: dict[str, Any], path: str) -> None:
    """WandbLogger passes its extra keys and ``mode`` to ``wandb.init``, which checks them only at the first log."""
    import inspect

    import wandb
    from lightning.pytorch.loggers import WandbLogger
    from wandb.sdk.wandb_settings import Settings

    own = set(inspect.signature(WandbLogger.__init__).parameters)
    init = set(inspect.signature(wandb.init).parameters)
    for key in node:
        if not str(key).startswith("_") and key not in own | init:
            allowed = ", ".join(sorted((own | init) - {"self", "kwargs"}))
            raise ConfigError(f"{path}.{key} is not a key of WandbLogger or wandb.init; expected one of: {allowed}")
    mode = node.get("mode", "auto")
    if mode != "auto":
        try:
            Settings(mode=mode)
        except Exception:  # pydantic's ValidationError: not a mode
            raise ConfigError(
                f"{path}.mode={_shown(mode)} is not allowed; expected one of: {', '.join(_wandb_modes())}"
            ) from None


def build_callbacks(cfg: DictConfig) -> list[Any]:
    """Every configured callback, checked (a callback set to null is switched off, as in a run)."""
    callbacks = []
    for name, node in (resolved(cfg, "callbacks") or {}).items():
        if node is None:
            continue
        callbacks.append(build_checked(node, f"callbacks.{name}", _instantiate))
    return callbacks


def check_objects(cfg: DictConfig) -> None:
    """Build callbacks, loggers, optimizer, scheduler, clipping rule, data module and network (on the meta
    device); nothing is written."""
    build_callbacks(cfg)
    for name, node in (resolved(cfg, "logger") or {}).items():
        if node is None:
            continue
        if str(node.get("_target_", "")).endswith("WandbLogger"):
            _check_wandb(node, f"logger.{name}")
            node = {k: v for k, v in node.items() if k != "mode"}  # gradlab's "auto" is resolved in train.py
        build_checked(node, f"logger.{name}", _instantiate)
    _check_optimizer_and_scheduler(cfg)
    if resolved(cfg, "clipping"):
        build_checked(resolved(cfg, "clipping"), "clipping", _instantiate)
    datamodule = build_checked(resolved(cfg, "data"), "data", _instantiate)
    _check_network(cfg, datamodule.task)


def _check_network(cfg: DictConfig, task: Any) -> None:

    def network(node: dict[str, Any]) -> Any:
        with torch.device("meta"):  # shapes and init choices only: no memory, no initialisation cost
            return build_network(OmegaConf.create(node), task)

    build_checked(resolved(cfg, "model"), "model", network)


@contextlib.contextmanager
def _quiet_trainer_init() -> Iterator[None]:
    """Build a Trainer without its banner ("GPU available: ...") or warnings, and give back the global torch
    flags its ``deterministic``/``benchmark`` arguments set, so the real Trainer of the run starts clean."""
    lightning_loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in lightning_loggers]
    flags = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    env, rank = dict(os.environ), rank_zero_only.rank
    try:
        for lg in lightning_loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(lightning_loggers, levels, strict=True):
            lg.setLevel(level)
        torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
        torch.backends.cudnn.benchmark = flags[2]
        os.environ.clear()
        os.environ.update(env)
        rank_zero_only.rank = rank


# what a Trainer needs from the machine it runs on; a job that runs elsewhere (a SLURM launcher) is checked
# with these set to what any machine has, so its other arguments are still checked here
_HARDWARE_KEYS = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto", "sync_batchnorm": False}


def check_trainer(cfg: DictConfig, runs_here: bool = True) -> None:
    """Build the Trainer (no loggers; the configured callbacks, as a run passes them) and discard it."""
    from lightning.pytorch.callbacks import ProgressBar

    node = resolved(cfg, "trainer")
    if not runs_here:
        node = {**node, **{k: v for k, v in _HARDWARE_KEYS.items() if k in node}}
    callbacks = build_callbacks(cfg)
    if not node.get("enable_progress_bar", True):  # train.py drops the progress bar then, as Lightning demands
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    try:
        with _quiet_trainer_init():
            build_checked(node, "trainer", lambda n: _instantiate(n, logger=False, callbacks=list(callbacks)))
    except ConfigError as err:
        if str(err).startswith("trainer.accelerator="):
            raise ConfigError(f"{err}; this machine has: {', '.join(available_accelerators())}, or auto") from None
        raise


def available_accelerators() -> list[str]:
    """The accelerators this machine has, in Lightning's names."""
    from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator, MPSAccelerator

    found = (("cpu", CPUAccelerator), ("gpu", CUDAAccelerator), ("mps", MPSAccelerator))
    return [name for name, accelerator in found if accelerator.is_available()]
