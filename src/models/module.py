"""The one LightningModule: trains any gradlab network on any synthetic task.

Regression tasks use MSE, classification tasks cross-entropy (per step for copy memory), the scalar chain
uses the output itself as the loss. Options of the training loss (the top-level ``loss`` node): ``z_loss``
adds PaLM's z-loss to a classification loss, ``z_loss``·mean(log² Z), log Z = logsumexp of the logits
(Chowdhery et al. 2022 §5, at 1e-4; Wortsman et al. 2023 §3.1.2); it keeps log Z near 0, so the output logits
cannot drift off together. ``grad_penalty`` = λ adds λ·||∇_θ L||² (the seed article's gradient penalty; its own
gradient needs a double backward, so a step costs two to three backward passes; it discourages large gradients
smoothly instead of cutting them and bounds no single step). Every stage shares ``_common_step``. Validation
also logs the loss as a fraction of the task's trivial baseline (``val/loss_vs_baseline``;
src/analysis/criteria.py says what beats and solves it). Classification tasks log ``acc`` on the positions that
hold the answer (temporal order: the final step; copy: the recalled symbols only) and, for per-step tasks,
``exact_match``: the share of sequences with every answer position right.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor, nn
from torch.optim import Optimizer
from torchmetrics.classification import MulticlassExactMatch
from typing_extensions import override

from src.clipping.apply import ClipReport, clip_gradients
from src.clipping.base import ClipRule
from src.data.task import Task
from src.steps import step_taken


@dataclass
class _TrainValues:
    """The training step's values to log (``train/loss``, ...) and its batch size."""

    values: dict[str, Tensor] = field(default_factory=dict)
    batch_size: int = 0


class GradLabModule(L.LightningModule):
    """Trains ``network`` on ``task``; clips in ``configure_gradient_clipping`` (src/clipping/apply.py) and
    reports what it did through the ``ReportsClipping`` protocol (``clip_report``).

    Args:
        network: the bare network (an ``nn.Module`` from src/models/).
        task: the task's shapes, loss and baseline.
        optimizer: a partial optimizer, called with ``params``.
        scheduler: a partial LR scheduler, called with ``optimizer`` (stepped every optimizer step), or None.
        clipper: a clipping rule of src/clipping/ (an ``nn.Module`` of buffers: checkpointed with the model),
            instead of the Trainer's ``gradient_clip_val``; None for Lightning's clipping or none.
        grad_penalty: λ of the gradient penalty λ·||∇_θ L||² added to the training loss; 0 for none.
        z_loss: weight of the z-loss z_loss·mean(logsumexp(logits)²) added to a classification loss; 0 for none.
    """

    def __init__(
        self,
        network: nn.Module,
        task: Task,
        optimizer: Callable[..., Optimizer],
        scheduler: Callable[..., Any] | None = None,
        clipper: ClipRule | None = None,
        grad_penalty: float = 0.0,
        z_loss: float = 0.0,
    ) -> None:
        super().__init__()
        self.network = network
        self.task = task
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.clipper = clipper
        self.grad_penalty = grad_penalty
        self._clip_report: ClipReport | None = None
        # this step's train/* values and batch size, logged on logging steps (a plain object: nn.Module's
        # __setattr__, which every attribute assignment of a LightningModule goes through, costs per step)
        self._train = _TrainValues()
        self.z_loss = z_loss
        metrics: dict[str, torchmetrics.Metric] = {"loss": torchmetrics.MeanMetric()}
        if task.is_classification:
            metrics["acc"] = torchmetrics.Accuracy(task="multiclass", num_classes=task.output_size)
            if task.output == "per_step":
                metrics["exact_match"] = MulticlassExactMatch(num_classes=task.output_size)
        self.val_metrics = torchmetrics.MetricCollection(metrics, prefix="val/")
        self.test_metrics = self.val_metrics.clone(prefix="test/")
        self.val_curve: list[tuple[int, float]] = []  # (step, val/loss) of every validation during fit

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)

    def loss(self, out: Tensor, y: Tensor) -> Tensor:
        if self.task.loss == "mse":
            return F.mse_loss(out, y)
        if self.task.loss == "cross_entropy":
            return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))  # (B·T, C) vs (B·T,)
        return out.mean()  # "output": the seed's chain, where ∂L/∂output = 1 per sample

    def gradient_penalty(self, loss: Tensor) -> Tensor:
        """λ·||∇_θ L||² over the network's parameters, differentiable (``create_graph``: a double backward)."""
        params = [p for p in self.network.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        return self.grad_penalty * torch.stack([g.pow(2).sum() for g in grads if g is not None]).sum()

    def _common_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        train = self._train
        if stage == "train":
            train.values.clear()
            train.batch_size = len(x)
        out = self(x)
        loss = self.loss(out, y)
        if stage == "train" and self.z_loss > 0 and self.task.is_classification:
            log_z = out.reshape(-1, out.shape[-1]).logsumexp(-1)  # (B·T,) log-partition of each prediction
            z_term = self.z_loss * log_z.square().mean()
            train.values["train/z_loss"] = z_term
            loss = loss + z_term
        if stage == "train" and self.grad_penalty > 0:
            penalty = self.gradient_penalty(loss)
            train.values["train/grad_penalty"] = penalty
            train.values["train/loss_unpenalised"] = loss
            loss = loss + penalty
        if stage == "train":
            train.values["train/loss"] = loss
            return loss
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics["loss"].update(loss, weight=len(x))
        if "acc" in metrics:
            preds = out.argmax(-1)  # (B,) or (B, T)
            if self.task.answer_steps:
                preds, y = preds[:, -self.task.answer_steps :], y[:, -self.task.answer_steps :]
            metrics["acc"].update(preds.reshape(-1), y.reshape(-1))
            if "exact_match" in metrics:
                metrics["exact_match"].update(preds, y)
        return loss

    @override
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._common_step(batch, "train")

    @override
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """``self.log`` the step's training values (``train/loss``, ...) only on the steps Lightning writes.

        Every ``self.log`` call costs Lightning's result collection a walk over the value and its metadata,
        whether or not the step is written; here it runs on Lightning's logging steps only (its
        ``should_update_logs``: (b + 1) % log_every_n_steps == 0, or the stop, known by now, after every
        callback's ``on_before_optimizer_step``) and on an epoch's or the run's last step (for
        ``callback_metrics``, read into summary.json). The values stay on device: as with ``self.log`` in
        ``training_step``, Lightning reads them to the host only when it writes them. Not on the progress
        bar: Lightning turns every prog_bar value into a Python float on every batch, a host sync per step on
        GPU.
        """
        trainer, train = self.trainer, self._train
        step = step_taken(trainer) if train.values else None  # None: a micro-batch, no step taken
        if step is None:
            return
        every = trainer.log_every_n_steps
        if every > 0 and ((step + 1) % every == 0 or trainer.should_stop or self._last_batch(trainer, step)):
            for name, value in train.values.items():
                self.log(name, value, on_step=True, on_epoch=False, batch_size=train.batch_size)
        train.values.clear()

    @staticmethod
    def _last_batch(trainer: L.Trainer, step: int) -> bool:
        """Lightning's ``epoch_loop._is_training_done`` with the step already known: max_steps reached by
        ``step`` or the epoch's last batch."""
        epoch_loop = trainer.fit_loop.epoch_loop
        return 0 <= epoch_loop.max_steps <= step + 1 or epoch_loop._num_ready_batches_reached()

    @override
    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._common_step(batch, "val")

    @override
    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._common_step(batch, "test")

    def _log_eval(self, stage: str) -> None:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        values = metrics.compute()
        if math.isfinite(self.task.baseline):
            values[f"{stage}/loss_vs_baseline"] = values[f"{stage}/loss"] / self.task.baseline
        self.log_dict(values, prog_bar=stage == "val")
        metrics.reset()
        if stage == "val" and self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:  # one host read
            self.val_curve.append((self.global_step, float(values["val/loss"])))

    @override
    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    @override
    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    @override
    def configure_gradient_clipping(
        self,
        optimizer: Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        self._clip_report = clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm, self.clipper)

    def clip_report(self) -> ClipReport | None:
        """What clipping did at the latest optimizer step (``src.clipping.ReportsClipping``)."""
        return self._clip_report

    @override
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
