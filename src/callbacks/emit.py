"""When to log and how: once per logging step, one host transfer, every logger of the trainer, rank 0 only.

Callbacks keep their numbers on device between logging steps; ``emit`` stacks them into one tensor, moves it
to the host in a single ``.tolist()`` and hands plain floats to the loggers. Metrics from gradients need no
cross-rank reduction: under DDP the gradients are already identical on every rank.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


def is_logging_step(step: int, every_n_steps: int) -> bool:
    """Optimizer step ``step`` (0-based, the weights the gradient was computed at) is logged."""
    return every_n_steps > 0 and step % every_n_steps == 0


def check_interval(every_n_steps: int | None) -> int | None:
    """A callback's logging interval: None (the Trainer's ``log_every_n_steps``) or a positive step count."""
    if every_n_steps is not None and every_n_steps < 1:
        raise ValueError(
            f"every_n_steps={every_n_steps} is not allowed; expected an integer >= 1, or null (the Trainer's "
            "log_every_n_steps)"
        )
    return every_n_steps


def to_floats(metrics: Mapping[str, Tensor | float]) -> dict[str, float]:
    """One device-to-host copy for all tensor values (a single sync instead of one per metric)."""
    keys = [k for k, v in metrics.items() if isinstance(v, Tensor)]
    out = {k: float(v) for k, v in metrics.items() if not isinstance(v, Tensor)}
    if keys:
        values = torch.stack([metrics[k].detach().float().reshape(()) for k in keys]).cpu().tolist()
        out.update(zip(keys, values, strict=True))
    return out


def emit(trainer: object, metrics: Mapping[str, Tensor | float], step: int) -> dict[str, float]:
    """Send ``metrics`` to every logger from rank 0; returns what was sent (empty on other ranks)."""
    if not metrics or not getattr(trainer, "is_global_zero", True):
        return {}
    values = to_floats(metrics)
    for logger in getattr(trainer, "loggers", []):
        logger.log_metrics(values, step=step)
    return values
