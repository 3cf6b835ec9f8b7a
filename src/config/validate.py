"""Every range and compatibility check on a composed config, in one place.

Types and enums are already checked by the structured schema when Hydra composes the config; what is left
are ranges (clip > 0, seq_len >= 2, depth >= 1, ...), model/task compatibility, keys of ``_target_`` nodes
that the target does not accept (a misspelled ``trainer.max_step`` would otherwise only fail after the run
directory exists), and the values each object's own constructor refuses (src/config/objects.py). Each
failure is one line naming the key and what is allowed. What depends on the machine or on files (the
Trainer's devices, ``ckpt_path``, an existing run directory) is checked in preflight.py.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import math
from collections.abc import Callable
from dataclasses import fields
from typing import Any, get_args

from hydra.utils import get_class, get_method
from omegaconf import DictConfig, OmegaConf

from src.config.errors import ConfigError
from src.config.schema import TrainConf
from src.data.recall import N_KEYS

__all__ = ["RANGES", "ConfigError", "validate"]


def _positive(v: Any) -> bool:
    return isinstance(v, int | float) and v > 0 and math.isfinite(v)


def _at_least(n: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and v >= n


def _non_negative(v: Any) -> bool:
    return isinstance(v, int | float) and v >= 0 and math.isfinite(v)


@functools.cache
def precisions() -> set[str]:
    """Lightning's own list: its Trainer refuses anything else, but only after the run directory exists. Read on
    first use: importing Lightning takes seconds, and a command line with a typo is refused without it."""
    from lightning.fabric.plugins.precision.precision import (
        _PRECISION_INPUT_INT,
        _PRECISION_INPUT_STR,
        _PRECISION_INPUT_STR_ALIAS,
    )

    kinds = (_PRECISION_INPUT_STR, _PRECISION_INPUT_INT, _PRECISION_INPUT_STR_ALIAS)
    return {str(p) for kind in kinds for p in get_args(kind)}


Ranges = dict[str, tuple[Callable[[Any], bool], str]]
# key -> (check, what is allowed); keys missing from a config (e.g. model.depth for an RNN) are skipped
_CHEAP_RANGES: Ranges = {
    "clip": (lambda v: v is None or _positive(v), "a number > 0, or null for no clipping"),
    "seed": (_non_negative, "an integer >= 0"),
    "model.depth": (_at_least(1), "an integer >= 1"),
    "model.width": (_at_least(1), "an integer >= 1"),
    "model.hidden_size": (_at_least(1), "an integer >= 1"),
    "model.num_layers": (_at_least(1), "an integer >= 1"),
    "model.heads": (_at_least(1), "an integer >= 1"),
    "model.mlp_ratio": (_at_least(1), "an integer >= 1"),
    "model.init_std": (_positive, "a number > 0"),
    "model.init_gain": (
        lambda v: v is None or _positive(v),
        "a number > 0, or null for the activation's gain",
    ),
    "model.recurrent_gain": (_positive, "a number > 0 (sigma_max of the initial W_hh)"),
    "model.negative_slope": (_non_negative, "a number >= 0"),
    "data.batch_size": (_at_least(1), "an integer >= 1"),
    "data.shards_per_device": (_at_least(1), "an integer >= 1"),
    "data.batches_per_epoch": (_at_least(1), "an integer >= 1"),
    "data.val_size": (_at_least(1), "an integer >= 1"),
    "data.test_size": (_at_least(1), "an integer >= 1"),
    "data.eval_batch_size": (_at_least(1), "an integer >= 1"),
    "data.repeat_batches": (_at_least(0), "an integer >= 0 (0 = fresh batches every step)"),
    "data.corrupt_every": (_at_least(0), "an integer >= 0 (0 = no corrupted batches)"),
    "optimizer.lr": (_positive, "a number > 0"),
    "optimizer.weight_decay": (_non_negative, "a number >= 0"),
    # torch's schedulers take these in their constructors and divide by them at the first step
    "scheduler.step_size": (_at_least(1), "an integer >= 1"),
    "scheduler.T_max": (_at_least(1), "an integer >= 1 (optimizer steps of the cosine)"),
    "scheduler.start_factor": (lambda v: _positive(v) and v <= 1, "a number in (0, 1]"),
    "scheduler.total_iters": (_at_least(1), "an integer >= 1"),
    "loss.z_loss": (_non_negative, "a number >= 0 (0 = off)"),
    "loss.grad_penalty": (_non_negative, "a number >= 0 (0 = off)"),
    "trainer.max_steps": (lambda v: v == -1 or (isinstance(v, int) and v >= 1), "an integer >= 1, or -1"),
    "trainer.log_every_n_steps": (_at_least(1), "an integer >= 1"),
    "trainer.accumulate_grad_batches": (_at_least(1), "an integer >= 1"),
    "trainer.num_nodes": (_at_least(1), "an integer >= 1"),
}
# checked after every other check but the objects' own: their lists come from Lightning (see precisions())
_LIGHTNING_RANGES: Ranges = {
    "trainer.precision": (
        lambda v: str(v) in precisions(),
        "32-true, bf16-mixed or 16-mixed (or 16-true, bf16-true, 64-true)",
    ),
}
RANGES: Ranges = {**_CHEAP_RANGES, **_LIGHTNING_RANGES}  # every key's check (preflight's messages read it)

SEQUENCE_TASKS = ("adding", "copy", "temporal_order", "recall")


def _fail(key: str, value: Any, allowed: str) -> None:
    shown = "null" if value is None else value
    raise ConfigError(f"{key}={shown} is not allowed; expected {allowed}")


def _check_ranges(cfg: DictConfig, ranges: Ranges) -> None:
    for key, (ok, allowed) in ranges.items():
        if OmegaConf.select(cfg, key, default="__absent__") == "__absent__":
            continue
        value = OmegaConf.select(cfg, key)
        if not ok(value):
            _fail(key, value, allowed)


def _check_task(cfg: DictConfig) -> None:
    task, seq_len = (
        str(cfg.data.task.value if hasattr(cfg.data.task, "value") else cfg.data.task),
        cfg.data.seq_len,
    )
    if task in SEQUENCE_TASKS and (not isinstance(seq_len, int) or seq_len < 2):
        _fail("data.seq_len", seq_len, "an integer >= 2")
    if task == "recall" and seq_len > N_KEYS:
        _fail("data.seq_len", seq_len, f"an integer from 2 to {N_KEYS} for data=recall (pairs with distinct keys)")
    if cfg.data.batch_size % cfg.data.shards_per_device:
        raise ConfigError(
            f"data.batch_size={cfg.data.batch_size} is not allowed; expected a multiple of "
            f"data.shards_per_device={cfg.data.shards_per_device}"
        )
    sequence_model = getattr(get_class(cfg.model._target_), "sequence_model", False)
    chain = cfg.model._target_.endswith("ScalarChain")
    if chain and task != "scalar":
        raise ConfigError(f"data={task} is not allowed with model=chain; expected data=scalar")
    if sequence_model and task not in SEQUENCE_TASKS:
        raise ConfigError(f"data={task} is not allowed with a sequence model; expected one of {SEQUENCE_TASKS}")
    if not sequence_model and task == "copy":
        raise ConfigError(
            "data=copy is not allowed with a feed-forward model; expected model=rnn, lstm, gru or transformer"
        )
    heads = OmegaConf.select(cfg, "model.heads")
    if heads and cfg.model.width % heads:
        raise ConfigError(f"model.width={cfg.model.width} is not allowed; expected a multiple of model.heads={heads}")
    z_loss = OmegaConf.select(cfg, "loss.z_loss") or 0.0
    from src.data.datamodule import make_task  # Lightning's DataModule: see precisions()

    if z_loss > 0 and not make_task(task, seq_len, cfg.data.get("x", 1.0)).task.is_classification:
        raise ConfigError(f"loss.z_loss={z_loss} is not allowed with data={task} (regression); expected 0")


def _accepted_keys(target: str) -> set[str] | None:
    """Parameter names ``target`` accepts, or None when it takes **kwargs (anything goes)."""
    try:
        obj: Any = get_class(target)
        fn = obj.__init__
    except Exception:
        fn = get_method(target)
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def _check_targets(node: Any, path: str) -> None:
    if isinstance(node, DictConfig):
        target = node.get("_target_") if "_target_" in node else None
        if isinstance(target, str):
            try:
                accepted = _accepted_keys(target)
            except Exception as err:
                raise ConfigError(f"{path}._target_={target} cannot be imported ({err})") from None
            if accepted is not None:
                for key in node:
                    if not str(key).startswith("_") and key not in accepted:
                        allowed = ", ".join(sorted(k for k in accepted if k != "self"))
                        raise ConfigError(f"{path}.{key} is not a key of {target}; expected one of: {allowed}")
        for key in node:
            _check_targets(node._get_node(key), f"{path}.{key}" if path else str(key))


def _check_top_level(cfg: DictConfig) -> None:
    known = {f.name for f in fields(TrainConf)} | {"hydra"}
    for key in cfg:
        if key not in known:
            allowed = ", ".join(sorted(known))
            raise ConfigError(f"{key} is not a known top-level key; expected one of: {allowed}")


def _check_clipping(cfg: DictConfig) -> None:
    """Refuse clipping set-ups that Lightning would reject late or that would silently do something else."""
    rule = OmegaConf.select(cfg, "clipping._target_")
    strategy = str(OmegaConf.select(cfg, "trainer.strategy", default="auto") or "auto").lower()
    algorithm = getattr(cfg.clip_algorithm, "value", cfg.clip_algorithm)
    if rule and cfg.clip is not None:
        raise ConfigError(
            f"clipping={rule.rsplit('.', 1)[-1]} cannot be combined with clip={cfg.clip} (two rules on one step); "
            "expected clip=null"
        )
    if "fsdp" in strategy and cfg.clip is not None and algorithm == "norm":
        raise ConfigError(
            "clip_algorithm=norm is not supported with trainer.strategy=fsdp (Lightning's FSDPPrecision refuses "
            "it); expected clip_algorithm=value or clip=null"
        )
    if "deepspeed" in strategy and cfg.clip is not None and algorithm == "value":
        raise ConfigError("clip_algorithm=value is not supported with DeepSpeed; expected clip_algorithm=norm")
    if rule and ("fsdp" in strategy or "deepspeed" in strategy):
        raise ConfigError(f"clipping rules read whole gradients; not supported with trainer.strategy={strategy}")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # present in sys.modules as None: imports of it are blocked
        return False


# logger targets whose package is an optional extra -> (modules any of which serves it, the extra)
OPTIONAL_LOGGERS = {"TensorBoardLogger": (("tensorboard", "tensorboardX"), "tensorboard")}


def _check_optional_packages(cfg: DictConfig) -> None:
    """A logger whose optional package is missing fails here, not after the run directory exists."""
    for key, node in (OmegaConf.select(cfg, "logger") or {}).items():
        target = str(node.get("_target_", "")) if isinstance(node, DictConfig) else ""
        for cls, (modules, extra) in OPTIONAL_LOGGERS.items():
            if target.endswith(cls) and not any(_importable(m) for m in modules):
                raise ConfigError(
                    f"logger.{key} ({cls}) needs the optional {modules[0]} package: pip install -e '.[{extra}]'"
                )


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError with a one-line message if ``cfg`` cannot make a sensible run."""
    _check_top_level(cfg)
    _check_ranges(cfg, _CHEAP_RANGES)
    _check_task(cfg)
    _check_clipping(cfg)
    _check_optional_packages(cfg)
    for group in ("trainer", "optimizer", "scheduler", "logger", "callbacks", "clipping"):
        if OmegaConf.select(cfg, group) is not None:
            _check_targets(cfg[group], group)
    _check_ranges(cfg, _LIGHTNING_RANGES)
    from src.config.objects import check_objects  # builds them with torch and Lightning: see precisions()

    check_objects(cfg)  # the values: each object's own constructor checks them (src/config/objects.py)
