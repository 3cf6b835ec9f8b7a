"""Resuming without surprises: ``ckpt_path`` must be a gradlab checkpoint of this model, and no run writes into a
directory that already holds a run's results unless ``overwrite=true``.

Lightning restores a checkpoint only inside ``trainer.fit``, after the run directory, the loggers and the W&B
run exist: a missing file is a traceback, a truncated one an unpickling error, another model's weights a
``load_state_dict`` size mismatch. Here the file is opened once, lazily (``mmap``, ``weights_only`` as
Lightning loads it), its ``state_dict`` keys and shapes compared with the module this config builds on the
meta device (no memory, no initialisation cost), and its optimizer's hyper-parameter names with the
configured optimizer's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from src.config.errors import ConfigError

# Lightning's own values of ckpt_path (resolved by Lightning inside the run directory): passed through
LIGHTNING_CKPT_ALIASES = ("last", "hpc", "best", "registry")
RESULT_FILES = ("summary.json", "divergence.json", "csv/metrics.csv")


def _shape(t: Any) -> list[int]:
    return list(t.shape) if hasattr(t, "shape") else []


def _load(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap" not in str(err):  # mmap needs the zip format; an old-format file is read whole
            raise
    return torch.load(path, map_location="cpu", weights_only=True)


def _run_config_of(ckpt: Path) -> DictConfig | None:
    """The composed config of the run that wrote ``<run>/checkpoints/<name>.ckpt``, if it is still beside it."""
    for candidate in (ckpt.parent.parent / ".hydra" / "config.yaml", ckpt.parent / ".hydra" / "config.yaml"):
        if candidate.is_file():
            try:
                cfg = OmegaConf.load(candidate)
            except Exception:  # an unreadable config only loses the hint
                return None
            return cfg if isinstance(cfg, DictConfig) else None
    return None


def _leaves(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_leaves(value, f"{prefix}.{key}"))
        return out
    return {prefix: node}


def _config_differences(ckpt: Path, cfg: DictConfig) -> str:
    """`; its run had model.hidden_size=64 (here 32)`: the model and task keys that differ from this config."""
    from hydra.utils import get_class

    from src.config.objects import resolved  # Lightning: imported when a checkpoint is checked, not for a typo

    old = _run_config_of(ckpt)
    if old is None:
        return ""
    # what sizes a network: the model's keys, the task, and T for a feed-forward net (it sees T x inputs)
    sequence_model = getattr(get_class(cfg.model._target_), "sequence_model", False)
    shaping = {"data.task"} if sequence_model else {"data.task", "data.seq_len"}
    diffs = []
    for group in ("model", "data"):
        theirs = _leaves(OmegaConf.to_container(old[group], resolve=False), group) if group in old else {}
        ours = _leaves(resolved(cfg, group), group)
        for key, value in theirs.items():
            if group == "data" and key not in shaping:
                continue
            if isinstance(value, str) and "${" in value:
                continue  # an interpolation of the old run: its value is not known here
            if key in ours and str(ours[key]) != str(value):
                diffs.append(f"{key}={value} (here {ours[key]})")
    return f"; its run had {', '.join(diffs)}" if diffs else ""


def expected_state(cfg: DictConfig) -> dict[str, list[int]]:
    """Keys and shapes of the LightningModule this config builds, built on the meta device."""
    from hydra.utils import instantiate

    from src.build import build_module  # Lightning: imported when a checkpoint is checked, not for a typo

    task = instantiate(cfg.data).task
    with torch.device("meta"):
        module = build_module(cfg, task)
    return {k: _shape(v) for k, v in module.state_dict().items()}


def _optimizer_keys(cfg: DictConfig) -> set[str]:
    from hydra.utils import instantiate

    optimizer = instantiate(cfg.optimizer)(params=[torch.nn.Parameter(torch.zeros(1))])
    return set(optimizer.param_groups[0]) - {"params"}


def check_checkpoint(cfg: DictConfig) -> None:
    """Raise ConfigError unless ``cfg.ckpt_path`` is a readable gradlab checkpoint this config can resume."""
    value = cfg.get("ckpt_path")
    if value is None or str(value) in LIGHTNING_CKPT_ALIASES or "://" in str(value):
        return  # nothing to resume, Lightning's own aliases, or a remote URL (read by Lightning's fsspec)
    path = Path(str(value)).expanduser()
    shown = f"ckpt_path={value}"
    expected = "expected a checkpoint a gradlab run wrote, e.g. <run dir>/checkpoints/last.ckpt"
    if not path.exists():
        raise ConfigError(f"{shown} does not exist; {expected}")
    if not path.is_file():
        raise ConfigError(f"{shown} is not a file; {expected}")
    try:
        ckpt = _load(path)
    except Exception as err:
        reason = " ".join(str(err).split()).split(". ")[0][:160]  # torch's first sentence
        raise ConfigError(f"{shown} cannot be read (truncated, or not a torch file: {reason}); {expected}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "pytorch-lightning_version" not in ckpt:
        raise ConfigError(f"{shown} is not a Lightning training checkpoint (no state_dict); {expected}")
    theirs = {k: _shape(v) for k, v in ckpt["state_dict"].items()}
    if not any(k.startswith("network.") for k in theirs):
        raise ConfigError(f"{shown} is not a gradlab checkpoint (no network.* weights); {expected}")
    ours = expected_state(cfg)
    hint = _config_differences(path, cfg)
    for key, shape in ours.items():
        if key in theirs and theirs[key] != shape:
            raise ConfigError(
                f"{shown} was saved by a different model ({key} is {theirs[key]} there, {shape} here{hint}); "
                "expected the model and task config it was trained with"
            )
    missing, unexpected = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    if missing or unexpected:
        detail = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise ConfigError(
            f"{shown} was saved by a different model or clipping rule ({detail}{hint}); "
            "expected the model, task and clipping config it was trained with"
        )
    groups = [g for s in ckpt.get("optimizer_states") or [] for g in s.get("param_groups", [])]
    if groups:
        saved, configured = set(groups[0]) - {"params"}, _optimizer_keys(cfg)
        # each side with settings the other lacks (SGD's momentum vs Adam's betas) is another optimizer; a setting
        # on one side only is a torch version adding one, which torch's load_state_dict handles
        if saved - configured and configured - saved:
            target = str(OmegaConf.select(cfg, "optimizer._target_", default="?")).rsplit(".", 1)[-1]
            raise ConfigError(
                f"{shown} was saved with another optimizer (its settings {', '.join(sorted(saved - configured))}; "
                f"{target} has {', '.join(sorted(configured - saved))}); expected the optimizer it was trained with"
            )


def results_in(run_dir: Path) -> list[str]:
    """What in ``run_dir`` would be a previous run's result (not Hydra's .hydra/ or a log)."""
    found = [name for name in RESULT_FILES if (run_dir / name).is_file()]
    found += [f"checkpoints/{p.name}" for p in sorted((run_dir / "checkpoints").glob("*.ckpt"))][:3]
    return found


def check_run_dir(run_dir: str | Path, overwrite: bool, key: str = "hydra.run.dir") -> None:
    """Refuse a run directory that already holds a run's results, unless ``overwrite``."""
    found = results_in(Path(run_dir))
    if found and not overwrite:
        raise ConfigError(
            f"{key}={run_dir} already holds a run ({', '.join(found)}); expected a new directory (leave {key} at "
            "its default: a resumed run writes a new one), or overwrite=true to write into this one"
        )
