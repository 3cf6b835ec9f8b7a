"""GradScalerMonitor: under ``16-mixed`` precision, the loss scale and the optimizer steps GradScaler skipped.

GradScaler skips every step whose unscaled gradients hold inf/NaN and halves its scale: fp16 overflow is itself
an exploding-gradient symptom, and a run that keeps skipping steps is not training even though its loss looks
finite. A skip is read, without an extra sync, as a drop of the scale across the step (``scaler.update()``
lowers it only on a skipped step). Logged at logging steps: ``amp/scale`` and ``amp/skipped_steps`` (total).
No-op without a GradScaler (fp32, bf16-mixed).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from torch.optim import Optimizer
from typing_extensions import override

from src.callbacks.emit import check_interval, emit, is_logging_step


class GradScalerMonitor(Callback):
    def __init__(self, every_n_steps: int | None = None) -> None:
        self.every_n_steps = check_interval(every_n_steps)
        self._scale_before: Tensor | None = None
        self._skipped: Tensor | None = None
        self._step = -1

    @staticmethod
    def _scaler(trainer: L.Trainer) -> Any:
        return getattr(trainer.precision_plugin, "scaler", None)

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        scaler = self._scaler(trainer)
        if scaler is not None and scaler.is_enabled():
            self._scale_before = scaler._scale.detach().clone()  # device tensor: get_scale() would sync
            self._step = trainer.global_step

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        before, self._scale_before = self._scale_before, None
        scaler = self._scaler(trainer)
        if before is None or scaler is None:
            return
        scale = scaler._scale.detach()
        skipped = (scale < before).to(torch.float32)
        self._skipped = skipped if self._skipped is None else self._skipped + skipped
        if is_logging_step(self._step, self.every_n_steps or trainer.log_every_n_steps):
            emit(trainer, {"amp/scale": scale, "amp/skipped_steps": self._skipped}, self._step)
