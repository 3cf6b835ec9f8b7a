"""ActivationMonitor: per-layer activation mean/std and backward δ norms, on logging steps only.

δ_l = ∂L/∂(output of layer l) is the seed article's "δ at each layer": it grows geometrically towards the
input when the layers' Jacobians have norm > 1 (16, 8, 4, 2, 1 for the w = 2 chain) and shrinks when < 1.
The activation statistics show what BatchNorm/LayerNorm change. Forward hooks (and the tensor hooks they
put on the outputs) exist only during a logging step's batches and are removed right after.
A layer is a module that owns parameters; for recurrent modules the output sequence is used. Under AMP the
δ's are divided by the GradScaler's scale, so they are in the loss's units.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from src.callbacks.emit import emit, is_logging_step


def parameter_modules(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return [
        (name or "root", m)
        for name, m in module.named_modules()
        if any(p.requires_grad for p in m.parameters(recurse=False))
    ]


class ActivationMonitor(Callback):
    def __init__(self, every_n_steps: int | None = None) -> None:
        self.every_n_steps = every_n_steps
        self._handles: list[RemovableHandle] = []
        self._stats: dict[str, Tensor] = {}
        self._step = -1
        self._scale: float | None = None

    def _hook(self, name: str):
        def forward_hook(module: nn.Module, args: Any, output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output
            if not isinstance(out, Tensor) or not out.is_floating_point():
                return
            detached = out.detach().float()
            self._stats[f"act/mean/{name}"] = detached.mean()
            self._stats[f"act/std/{name}"] = detached.std() if detached.numel() > 1 else detached.new_zeros(())
            if out.requires_grad:

                def grad_hook(grad: Tensor) -> None:
                    self._stats[f"delta/layer/{name}"] = torch.linalg.vector_norm(grad.detach().float())

                out.register_hook(grad_hook)

        return forward_hook

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step  # the optimizer step this batch contributes to
        if self._handles or not is_logging_step(step, self.every_n_steps or trainer.log_every_n_steps):
            return
        self._step = step
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in parameter_modules(pl_module)]

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if self._handles and scaler is not None:  # the scale this step's backward used (updated after the step)
            self._scale = float(scaler.get_scale())

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._handles or trainer.global_step == self._step:  # still accumulating this step
            return
        for handle in self._handles:
            handle.remove()
        self._handles = []
        stats, self._stats = self._stats, {}
        if self._scale is not None:  # δ's were taken from the scaled loss's backward
            scale, self._scale = self._scale, None
            stats = {k: v / scale if k.startswith("delta/") else v for k, v in stats.items()}
        emit(trainer, stats, self._step)
