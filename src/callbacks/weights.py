"""WeightMonitor: per-layer weight norms and update-to-weight ratios ||ΔW|| / ||W|| on logging steps.

The seed article's symptom of explosion is |W| growing step after step instead of settling; the update
ratio says how hard one optimizer step moves a layer (around 1e-3 is the usual healthy scale; a ratio near 1
means the step rewrote the layer). The weights are copied only before a logging step's update, so steps in
between cost nothing.
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
from src.callbacks.grad_stats import layer_index


class WeightMonitor(Callback):
    """At every ``every_n_steps``-th optimizer step s (None: the Trainer's ``log_every_n_steps``) logs

    - ``weight/layer/<name>``: ||W_s||, the weights the step's gradient was computed at;
    - ``update_ratio/layer/<name>``: ||W_(s+1) − W_s|| / ||W_s||, what the optimizer (after clipping) did.

    Layers as in ``grad_stats.parameter_layers``: modules that own parameters, recurrent weights split.
    Weights are identical on every DDP rank, so only rank 0 computes and logs.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        self.every_n_steps = check_interval(every_n_steps)
        self._before: list[Tensor] | None = None  # a copy of W_s, only across a logging step's update
        self._weight: Tensor | None = None  # (L,) ||W_s||
        self._step = -1

    def _layer_norms(self, pl_module: L.LightningModule, tensors: list[Tensor]) -> Tensor:
        """(L,) per layer: the square root of the sum of its parameters' squared norms."""
        index = layer_index(pl_module)
        norms = torch.stack(torch._foreach_norm(tensors, 2.0, dtype=torch.float32))
        squares = torch.zeros(len(index.names), dtype=torch.float32, device=norms.device)
        return squares.index_add_(0, index.segments((True,) * len(tensors), norms.device), norms.square()).sqrt()

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        step = trainer.global_step
        if trainer.is_global_zero and is_logging_step(step, self.every_n_steps or trainer.log_every_n_steps):
            params = [p.detach() for p in layer_index(pl_module).params]
            self._weight = self._layer_norms(pl_module, params)
            self._before = torch._foreach_mul(params, 1.0)  # one copy, one (multi-tensor) kernel
            self._step = step

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        before, weight, self._before, self._weight = self._before, self._weight, None, None
        if before is None or weight is None:  # not a logging step, or an accumulation micro-batch
            return
        index = layer_index(pl_module)
        torch._foreach_sub_(before, [p.detach() for p in index.params])  # W_s − W_(s+1), in place
        update = self._layer_norms(pl_module, before)
        ratio = update / weight.clamp_min(torch.finfo(torch.float32).tiny)
        values = torch.cat([weight, ratio]).tolist()  # one transfer
        keys = [f"weight/layer/{n}" for n in index.names] + [f"update_ratio/layer/{n}" for n in index.names]
        emit(trainer, dict(zip(keys, values, strict=True)), self._step)
