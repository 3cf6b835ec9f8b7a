"""HistogramMonitor: histograms of gradients and weights per layer, with non-finite values counted.

wandb.watch drops NaN/Inf from its histograms (and skips an all-non-finite tensor), which hides exactly the
moment of explosion. Here the non-finite entries of each layer are counted and logged as metrics
(``grad/nonfinite/<layer>``, ``weight/nonfinite/<layer>``), and the finite ones are binned with
``torch.histc`` on device. Histograms go to W&B (``wandb.Histogram``) and TensorBoard (``add_histogram``)
when those loggers are attached; the counts go to every logger. Gradients are read pre-clip.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor
from torch.optim import Optimizer

from src.callbacks.emit import emit, is_logging_step
from src.callbacks.grad_stats import parameter_layers


def finite_histogram(values: Tensor, bins: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(counts, edges, finite values, number of non-finite values) of a flat tensor."""
    values = values.detach().float().flatten()
    finite_mask = torch.isfinite(values)
    finite = values[finite_mask]
    nonfinite = values.numel() - finite_mask.sum()
    if finite.numel() == 0:
        return torch.zeros(bins), torch.linspace(0, 1, bins + 1), finite, nonfinite
    lo, hi = finite.min(), finite.max()
    hi = torch.where(hi > lo, hi, lo + 1e-12)
    counts = torch.histc(finite, bins=bins, min=float(lo), max=float(hi))
    return counts, torch.linspace(float(lo), float(hi), bins + 1), finite, nonfinite


class HistogramMonitor(Callback):
    def __init__(self, every_n_steps: int = 100, bins: int = 64) -> None:
        self.every_n_steps = every_n_steps
        self.bins = bins

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or not is_logging_step(step, self.every_n_steps):
            return
        counts: dict[str, Tensor | float] = {}
        wandb_logs: dict[str, object] = {}
        tensorboards = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        wandbs = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        for layer in parameter_layers(pl_module):
            sources = {
                "grad": [p.grad for p in layer.params if p.grad is not None],
                "weight": [p.detach() for p in layer.params],
            }
            for kind, tensors in sources.items():
                if not tensors:
                    continue
                flat = torch.cat([t.flatten() for t in tensors])
                hist, edges, finite, nonfinite = finite_histogram(flat, self.bins)
                counts[f"{kind}/nonfinite/{layer.name}"] = nonfinite
                for tb in tensorboards:
                    if finite.numel():
                        tb.experiment.add_histogram(f"{kind}_hist/{layer.name}", finite, global_step=step)
                if wandbs:
                    import wandb

                    hist_np = (hist.cpu().numpy(), edges.cpu().numpy())
                    wandb_logs[f"{kind}_hist/{layer.name}"] = wandb.Histogram(np_histogram=hist_np)
        emit(trainer, counts, step)
        for lg in wandbs:
            lg.experiment.log({**wandb_logs, "trainer/global_step": step})
