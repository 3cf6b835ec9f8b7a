"""ThroughTimeMonitor: ||dL/dh_t|| for every time step, and σ_max of every recurrent weight matrix.

Backpropagation through time multiplies one Jacobian W_hhᵀ·diag(σ'(·)) per step, so the gradient reaching
step t from a loss at the end shrinks or grows geometrically with T − t: the whole of the vanishing and
exploding gradient problem in one picture. Pascanu, Mikolov & Bengio (2013) §2.1: with |σ'| ≤ γ, explosion
*needs* σ_max(W_hh) > 1/γ (γ = 1 for tanh, 1/4 for sigmoid); σ_max < 1/γ is *sufficient* for vanishing.

Training stays on the fused kernels. On logging steps, before the optimizer update, the monitor runs one
extra forward/backward over the same weights with every recurrent module swapped for an unrolled loop
(src/callbacks/unrolled_rnn.py), and takes dL/dh_t with ``torch.autograd.grad`` with respect to the hidden
states only: parameter gradients are never touched. The loss comes from ``loss_fn(pl_module, batch)`` when
given, otherwise from ``pl_module.training_step(batch, 0)`` with ``pl_module.log`` silenced.

Logged: ``time_grad/t=<t>`` (the last layer of the first recurrent module, every ``stride``-th step),
``time_grad/ratio_first_last`` (||dL/dh_1|| / ||dL/dh_T||: ≪ 1 vanishing, ≫ 1 exploding),
``rnn/sigma_max/<module>.weight_hh_l<k>``; every layer's full profile goes to ``through_time.csv`` in the
trainer's log directory, and to a W&B line plot when a WandbLogger is attached. Rank 0 only.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor, nn
from torch.optim import Optimizer

from src.callbacks.emit import emit, is_logging_step
from src.callbacks.unrolled_rnn import check_unrollable, unrolled_forward

LossFn = Callable[[L.LightningModule, Any], Tensor]


@contextmanager
def unrolled(modules: dict[str, nn.RNNBase]) -> Iterator[dict[str, list[list[Tensor]]]]:
    """Within the block every module in ``modules`` runs the unrolled loop; its hidden states are collected."""
    states: dict[str, list[list[Tensor]]] = {}

    def patched(name: str, rnn: nn.RNNBase) -> Callable[..., Any]:
        def forward(input: Tensor, hx: Any = None) -> Any:
            output, h_n, per_layer = unrolled_forward(rnn, input, hx)
            states[name] = per_layer
            return output, h_n

        return forward

    for name, rnn in modules.items():
        rnn.forward = patched(name, rnn)  # instance attribute shadows nn.RNNBase.forward
    try:
        yield states
    finally:
        for rnn in modules.values():
            del rnn.forward


def _default_loss(pl_module: L.LightningModule, batch: Any) -> Tensor:
    pl_module.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
    try:
        out = pl_module.training_step(batch, 0)
    finally:
        del pl_module.log  # the instance attribute goes, the class method is back
    return out["loss"] if isinstance(out, dict) else out


class ThroughTimeMonitor(Callback):
    def __init__(self, every_n_steps: int | None = None, max_points: int = 64, loss_fn: LossFn | None = None) -> None:
        """``max_points``: at most this many ``time_grad/t=<t>`` scalars per logging step (the CSV has all)."""
        self.every_n_steps = every_n_steps
        self.max_points = max_points
        self.loss_fn = loss_fn or _default_loss
        self._batch: Any = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        every = self.every_n_steps or trainer.log_every_n_steps
        self._batch = batch if trainer.is_global_zero and is_logging_step(trainer.global_step, every) else None

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        batch, self._batch = self._batch, None
        modules = {n: m for n, m in pl_module.named_modules() if isinstance(m, nn.RNNBase)}
        if batch is None or not modules:
            return
        for rnn in modules.values():
            check_unrollable(rnn)
        step = trainer.global_step
        metrics: dict[str, Tensor | float] = {}
        for name, rnn in modules.items():
            for layer in range(rnn.num_layers):
                w_hh = getattr(rnn, f"weight_hh_l{layer}").detach().float()
                metrics[f"rnn/sigma_max/{name}.weight_hh_l{layer}"] = torch.linalg.matrix_norm(w_hh, ord=2)
        profiles = self._profiles(pl_module, batch, modules)
        first_name = next(iter(modules))
        top = profiles[(first_name, modules[first_name].num_layers - 1)]
        stride = max(1, math.ceil(len(top) / self.max_points))
        for t in range(0, len(top), stride):
            metrics[f"time_grad/t={t}"] = top[t]
        metrics["time_grad/ratio_first_last"] = top[0] / top[-1].clamp_min(1e-30)
        logged = emit(trainer, metrics, step)
        if logged:
            self._write(trainer, step, profiles)

    @torch.enable_grad()
    def _profiles(
        self, pl_module: L.LightningModule, batch: Any, modules: dict[str, nn.RNNBase]
    ) -> dict[tuple[str, int], Tensor]:
        with torch.autocast(device_type=pl_module.device.type, enabled=False), unrolled(modules) as states:
            loss = self.loss_fn(pl_module, batch).float()
        keys = [(name, layer) for name, layers in states.items() for layer in range(len(layers))]
        flat = [h for name, layers in states.items() for hs in layers for h in hs]
        grads = torch.autograd.grad(loss, flat, allow_unused=True)
        norms = torch.stack([g.float().norm() if g is not None else flat[0].new_zeros(()) for g in grads])
        steps = [len(states[name][layer]) for name, layer in keys]
        return dict(zip(keys, norms.split(steps), strict=True))  # (name, layer) -> (T,)

    def _write(self, trainer: L.Trainer, step: int, profiles: dict[tuple[str, int], Tensor]) -> None:
        rows = [
            (step, name, layer, t, value)
            for (name, layer), profile in profiles.items()
            for t, value in enumerate(profile.cpu().tolist())
        ]
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / "through_time.csv"
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "module", "layer", "t", "grad_norm"])
            writer.writerows(rows)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                name = next(iter(profiles))[0]
                last = profiles[(name, max(layer for n, layer in profiles if n == name))]
                table = wandb.Table(columns=["t", "grad_norm"], data=[[t, v] for t, v in enumerate(last.tolist())])
                plot = wandb.plot.line(table, "t", "grad_norm", title=f"||dL/dh_t|| at step {step}")
                logger.experiment.log({"time_grad/profile": plot, "trainer/global_step": step})
