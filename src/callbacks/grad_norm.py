"""GradNormMonitor: total gradient norm before and after clipping, share of steps clipped, per-layer norms.

Pre-clip numbers are read in ``on_before_optimizer_step`` (accumulated, all-reduced, unscaled, not yet
clipped); post-clip numbers in ``on_train_batch_end`` of the batch that stepped (the clipped gradients are
still there: they are only zeroed in the next step's closure). Everything stays on device between logging
steps; one transfer per logging step.

Custom clipping rules: if the LightningModule sets ``pl_module.clip_stats`` — a dict of 0-d tensors such as
``{"clip/threshold": t, "clip/scale": s}`` — inside ``configure_gradient_clipping``, those are logged too.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from torch.optim import Optimizer

from src.callbacks.emit import emit, is_logging_step
from src.callbacks.grad_stats import GradStats, layer_grad_norms, pre_clip_grad_stats

# a step counts as clipped when clipping shrank the total norm by more than float noise
_CLIPPED_RTOL = 1e-6


class GradNormMonitor(Callback):
    def __init__(self, every_n_steps: int | None = None, per_layer: bool = True) -> None:
        """``every_n_steps``: logging interval in optimizer steps (None: the Trainer's log_every_n_steps)."""
        self.every_n_steps = every_n_steps
        self.per_layer = per_layer
        self._pre: GradStats | None = None
        self._max: Tensor | None = None
        self._clipped: Tensor | None = None
        self._steps_since_log = 0

    def _every(self, trainer: L.Trainer) -> int:
        return self.every_n_steps or trainer.log_every_n_steps

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        self._pre = pre_clip_grad_stats(trainer, pl_module, optimizer)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        pre, self._pre = self._pre, None
        if pre is None:  # an accumulation micro-batch: no optimizer step was taken
            return
        post = layer_grad_norms(pl_module).total_norm
        clipped = (post < pre.total_norm * (1 - _CLIPPED_RTOL)).float()
        if self._max is None or self._clipped is None:
            self._max, self._clipped = pre.total_norm.clone(), clipped
        else:
            self._max = torch.fmax(self._max, pre.total_norm)  # fmax: a NaN step does not hide later maxima
            self._clipped = self._clipped + clipped
        self._steps_since_log += 1
        if not is_logging_step(pre.step, self._every(trainer)):
            return
        metrics: dict[str, Tensor | float] = {
            "grad/norm_total_preclip": pre.total_norm,
            "grad/norm_total_postclip": post,
            "grad/clipped_fraction": self._clipped / self._steps_since_log,
            "grad/norm_max_since_log": self._max,
            "grad/nonfinite_layers": (~torch.isfinite(pre.layer_norms)).sum(),
        }
        if self.per_layer:
            metrics.update(pre.as_dict("grad/layer/"))
        metrics.update(getattr(pl_module, "clip_stats", None) or {})
        emit(trainer, metrics, pre.step)
        self._max, self._clipped, self._steps_since_log = None, None, 0
