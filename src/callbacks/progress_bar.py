"""PacedRichProgressBar: Lightning's RichProgressBar, its training bar updated only as often as it is drawn.

Lightning's RichProgressBar draws ``refresh_rate`` times a second from a thread of its own, but updates the
bar's task and re-reads every progress-bar metric (``get_metrics``) on every training batch: on a small network
that is a measurable share of the step (``scripts/bench.py profile``). Between two draws only the last update is
seen, so this bar skips the updates in between; the last batch of an epoch or of the run always updates.
"""

from __future__ import annotations

from time import monotonic
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar
from typing_extensions import override


class PacedRichProgressBar(RichProgressBar):
    """A RichProgressBar whose training bar takes at most ``refresh_rate`` updates a second.

    Args:
        refresh_rate: draws (and training-bar updates) per second; 0 turns the bar off, as in RichProgressBar.
        **kwargs: RichProgressBar's other arguments (``leave``, ``theme``, ``console_kwargs``).
    """

    def __init__(self, refresh_rate: int = 1, **kwargs: Any) -> None:
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self._next_update = 0.0  # monotonic() time from which the next batch updates the bar

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = monotonic()
        last = batch_idx + 1 >= trainer.num_training_batches or trainer.should_stop
        last = last or 0 < trainer.max_steps <= trainer.global_step
        if now < self._next_update and not last:
            return
        self._next_update = now + 1 / max(self.refresh_rate, 1)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
