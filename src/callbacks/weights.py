"""WeightMonitor: per-layer weight norms and update-to-weight ratios ||ΔW|| / ||W|| on logging steps.

The seed article's second symptom of explosion is |W| growing monotonically instead of settling; the
update ratio says how violently one optimizer step moves a layer (≈1e-3 is the usual healthy scale, a ratio
near 1 means the step rewrote the layer). Weights are snapshotted only before a logging step's update;
``weight/layer/<name>`` is the norm after that update.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from torch.optim import Optimizer

from src.callbacks.emit import emit, is_logging_step
from src.callbacks.grad_stats import layer_index


def _layer_norms(tensors: list[Tensor], layer_of: list[int], n_layers: int) -> Tensor:
    norms = torch.stack(torch._foreach_norm(tensors, 2.0, dtype=torch.float32))
    sq = torch.zeros(n_layers, dtype=torch.float32, device=norms.device)
    sq.index_add_(0, torch.tensor(layer_of, device=norms.device), norms.square())
    return sq.sqrt()


class WeightMonitor(Callback):
    def __init__(self, every_n_steps: int | None = None) -> None:
        self.every_n_steps = every_n_steps
        self._before: list[Tensor] | None = None
        self._step = -1

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        step = trainer.global_step
        if is_logging_step(step, self.every_n_steps or trainer.log_every_n_steps):
            index = layer_index(pl_module)
            self._before = [p.detach().clone() for p in index.params]
            self._step = step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._before is None:
            return
        index = layer_index(pl_module)
        after = [p.detach() for p in index.params]
        n = len(index.names)
        weight = _layer_norms(after, index.layer_of, n)
        before = _layer_norms(self._before, index.layer_of, n)
        update = _layer_norms(torch._foreach_sub(after, self._before), index.layer_of, n)
        self._before = None
        metrics: dict[str, Tensor | float] = {}
        for i, name in enumerate(index.names):
            metrics[f"weight/layer/{name}"] = weight[i]
            metrics[f"update_ratio/layer/{name}"] = update[i] / before[i].clamp_min(1e-12)
        emit(trainer, metrics, self._step)
