"""The optimizer step a training batch belongs to, and the rank, read from Lightning once per batch.

``trainer.global_step`` is a chain of Lightning properties (the epoch loop, its optimization loop, their
progress counters) and ``trainer.is_global_zero`` goes through the strategy; every monitor, the divergence
guard, the clipping and the LightningModule read them in several hooks of every step, a few microseconds a
read. The epoch loop's batch counter (``batch_progress.total.ready``) is a plain attribute that Lightning
increments before ``on_train_batch_start`` and not again until the next batch, so each value is read from
Lightning at its first use in a batch and reused by every later caller until the counter moves. Outside a fit
loop (a trainer without one) they are read every time.
"""

from __future__ import annotations

import weakref
from typing import Any

# trainer -> (batch counter, the step this batch contributes to, rank 0)
_BEFORE: weakref.WeakKeyDictionary[Any, tuple[int, int, bool]] = weakref.WeakKeyDictionary()
# trainer -> (batch counter, the step this batch took, or None for an accumulation micro-batch)
_AFTER: weakref.WeakKeyDictionary[Any, tuple[int, int | None]] = weakref.WeakKeyDictionary()


def _batch(trainer: Any) -> int | None:
    try:
        return int(trainer.fit_loop.epoch_loop.batch_progress.total.ready)
    except AttributeError:
        return None


def _before(trainer: Any) -> tuple[int, int, bool]:
    batch = _batch(trainer)
    cached = _BEFORE.get(trainer) if batch is not None else None
    if cached is not None and cached[0] == batch:
        return cached
    value = (-1 if batch is None else batch, int(trainer.global_step), bool(trainer.is_global_zero))
    if batch is not None:
        _BEFORE[trainer] = value
    return value


def upcoming_step(trainer: Any) -> int:
    """In the hooks up to the update (batch start .. clipping): the optimizer step this batch contributes to,
    ``trainer.global_step`` then."""
    return _before(trainer)[1]


def is_rank_zero(trainer: Any) -> bool:
    """``trainer.is_global_zero``, in the hooks of a training batch."""
    return _before(trainer)[2]


def step_taken(trainer: Any) -> int | None:
    """In ``on_train_batch_end``: the optimizer step this batch just took (``global_step`` − 1 after the
    update), or None for an accumulation micro-batch that did not step (Lightning's own test)."""
    batch = _batch(trainer)
    cached = _AFTER.get(trainer) if batch is not None else None
    if cached is not None and cached[0] == batch:
        return cached[1]
    step = None if trainer.fit_loop._should_accumulate() else int(trainer.global_step) - 1
    if batch is not None:
        _AFTER[trainer] = (batch, step)
    return step
