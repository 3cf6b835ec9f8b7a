"""GradScalerMonitor: under ``16-mixed`` precision, the loss scale and the optimizer steps GradScaler skipped.

GradScaler skips every step whose unscaled gradients hold inf/NaN and halves its scale: fp16 overflow is itself
an exploding-gradient symptom, and a run that keeps skipping steps is not training even though its loss looks
finite. A skip is read, without an extra sync, as a drop of the scale across the step (``scaler.update()``
lowers it only on a skipped step). No-op without a GradScaler (fp32, bf16-mixed).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.optim import Optimizer
from typing_extensions import override

from src.callbacks.schedule import Monitor, loss_scale


class GradScalerMonitor(Monitor):
    """On the logging steps of ``src.callbacks.schedule`` logs ``amp/scale`` (GradScaler's loss scale after the
    step) and ``amp/skipped_steps`` (optimizer steps it skipped for inf/NaN gradients so far). Every step costs
    one on-device copy and comparison of the scale (a total needs every step); nothing without a GradScaler.

    Args:
        every_n_steps: logging interval in optimizer steps (< 1 raises ValueError); None uses the Trainer's
            ``log_every_n_steps``.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        super().__init__(every_n_steps)
        self._scale_before: Tensor | None = None
        self._skipped: Tensor | None = None
        self._step = -1

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        scale = loss_scale(trainer)
        if scale is not None:
            self._scale_before = scale.detach().clone()
            self._step = self.upcoming_step(trainer)

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        before, self._scale_before = self._scale_before, None
        scale = loss_scale(trainer)
        if before is None or scale is None:
            return
        skipped = (scale.detach() < before).to(torch.float32)
        self._skipped = skipped if self._skipped is None else self._skipped + skipped
        if self.logs_at(trainer, self._step):
            self.emit(trainer, {"amp/scale": scale.detach(), "amp/skipped_steps": self._skipped}, self._step)
