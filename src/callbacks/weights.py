"""WeightMonitor: per-layer weight norms and update-to-weight ratios ||ΔW|| / ||W|| on logging steps.

The seed article's symptom of explosion is |W| growing step after step instead of settling; the update
ratio says how hard one optimizer step moves a layer (around 1e-3 is the usual healthy scale; a ratio near 1
means the step rewrote the layer). The weights are copied only before a logging step's update, so steps in
between cost nothing.

On the CPU the copy goes into memory kept from one logging step to the next (released when the fit ends):
there torch allocates each fresh tensor from the operating system, and touching the new pages of a fresh
copy costs several times what copying into kept memory does (``python scripts/bench.py telemetry`` times
the monitor's hooks). On accelerators the caching allocator hands the same blocks back, so a fresh copy
per logging step costs no allocation and holds no memory between logging steps.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.optim import Optimizer
from typing_extensions import override

from src.callbacks.schedule import Monitor
from src.grad_norms import layer_index, layer_norms


class WeightMonitor(Monitor):
    """On the logging steps s of ``src.callbacks.schedule`` (step 0 included) logs, per layer
    (src/grad_norms.py: modules that own parameters) and per recurrent weight matrix (``.../recurrent/...``):

    - ``weight/layer/<name>``: ||W_s||, the weights the step's gradient was computed at;
    - ``update_ratio/layer/<name>``: ||W_(s+1) − W_s|| / ||W_s||, what the optimizer (after clipping) did.

    Args:
        every_n_steps: logging interval in optimizer steps; None uses the Trainer's ``log_every_n_steps``.

    Raises:
        ValueError: ``every_n_steps`` < 1.

    Weights are identical on every DDP rank, so only rank 0 computes and logs.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        super().__init__(every_n_steps)
        self._before: list[Tensor] | None = None  # a copy of W_s, only across a logging step's update
        self._kept: list[Tensor] = []  # on the CPU: the copy's memory, reused by every logging step
        self._weight: tuple[Tensor, Tensor] | None = None  # ||W_s|| per layer and per recurrent matrix
        self._step = -1

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        step = self.upcoming_step(trainer)
        if self.logs_at(trainer, step) and self.on_logging_rank(trainer):
            params = [p.detach() for p in layer_index(pl_module).params]
            self._weight = layer_norms(pl_module, params)
            self._before = self._copy(params)
            self._step = step

    def _copy(self, params: list[Tensor]) -> list[Tensor]:
        """A copy of ``params``: into the kept tensors on the CPU, fresh elsewhere (see the module docstring)."""
        if any(p.device.type != "cpu" for p in params):
            return torch._foreach_mul(params, 1.0)  # one copy, one (multi-tensor) kernel
        kept = self._kept
        if [(k.shape, k.dtype) for k in kept] != [(p.shape, p.dtype) for p in params]:
            kept = self._kept = [torch.empty_like(p) for p in params]
        torch._foreach_copy_(kept, params)
        return kept

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        before, weight, self._before, self._weight = self._before, self._weight, None, None
        if before is None or weight is None:  # not a logging step, or an accumulation micro-batch
            return
        index = layer_index(pl_module)
        torch._foreach_sub_(before, [p.detach() for p in index.params])  # W_s − W_(s+1), in place
        update = layer_norms(pl_module, before)
        tiny = torch.finfo(torch.float32).tiny
        ratios = [u / w.clamp_min(tiny) for u, w in zip(update, weight, strict=True)]
        values = torch.cat([*weight, *ratios]).tolist()  # one transfer
        names = [f"layer/{n}" for n in index.names] + [f"recurrent/{n}" for n in index.recurrent_names]
        keys = [f"weight/{n}" for n in names] + [f"update_ratio/{n}" for n in names]
        self.emit(trainer, dict(zip(keys, values, strict=True)), self._step)

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._kept, self._before = [], None
