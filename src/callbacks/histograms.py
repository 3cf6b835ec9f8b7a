"""HistogramMonitor: histograms of each layer's gradients and weights, non-finite values counted, not dropped.

wandb.watch removes NaN/inf before binning and skips a tensor with no finite value at all, which hides the
very step where a run explodes. Here the finite values are binned with ``torch.histc`` on device and the
non-finite ones are counted and logged as metrics (``grad/nonfinite/<layer>``, ``weight/nonfinite/<layer>``)
to every logger. Histograms go to W&B (``wandb.Histogram``, tagged ``grad_hist/<layer>``) and TensorBoard
(``add_histogram_raw``) when those loggers are attached; W&B is imported only then.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor
from torch.optim import Optimizer
from typing_extensions import override

from src.callbacks.emit import check_interval, emit, is_logging_step
from src.callbacks.grad_stats import parameter_layers


@dataclass
class Histogram:
    """One tensor's histogram over its finite values, on the host, with its non-finite count."""

    counts: list[float]  # (bins,)
    edges: list[float]  # (bins + 1,)
    num: float  # number of finite values, their sum and sum of squares (TensorBoard wants them)
    total: float
    total_sq: float
    nonfinite: int


def finite_histograms(tensors: list[Tensor], bins: int) -> list[Histogram]:
    """Histograms of flat fp32 tensors; two host transfers for the whole list, none per tensor."""
    finite = [torch.isfinite(t) for t in tensors]
    # range and moments of the finite values of every tensor, in one transfer
    inf = torch.tensor(float("inf"), device=tensors[0].device)
    stats = torch.stack(
        [
            torch.stack(
                [
                    torch.where(m, t, inf).min(),
                    torch.where(m, t, -inf).max(),
                    m.sum().float(),
                    torch.where(m, t, 0).sum(),
                    torch.where(m, t, 0).square().sum(),
                ]
            )
            for t, m in zip(tensors, finite, strict=True)
        ]
    ).tolist()
    counts, edges = [], []
    for t, (lo, hi, *_) in zip(tensors, stats, strict=True):
        if not lo <= hi:  # no finite value at all: an empty histogram, the count says why
            lo, hi = 0.0, 1.0
        elif hi == lo:  # histc needs a range of positive width
            lo, hi = lo - 0.5, hi + 0.5
        counts.append(torch.histc(t, bins=bins, min=lo, max=hi))  # histc ignores NaN and values out of range
        edges.append(torch.linspace(lo, hi, bins + 1).tolist())
    host_counts = torch.stack(counts).tolist() if counts else []
    return [
        Histogram(c, e, num, total, total_sq, t.numel() - int(num))
        for c, e, t, (_, _, num, total, total_sq) in zip(host_counts, edges, tensors, stats, strict=True)
    ]


class HistogramMonitor(Callback):
    """At every ``every_n_steps``-th optimizer step (None: the Trainer's ``log_every_n_steps``), per layer
    (modules that own parameters, recurrent weights split): the histogram of its pre-clip gradient and of
    its weights, ``bins`` bins over the finite range, plus ``grad/nonfinite/<layer>`` and
    ``weight/nonfinite/<layer>``, the number of NaN/inf entries. Rank 0 only.
    """

    def __init__(self, every_n_steps: int | None = None, bins: int = 64) -> None:
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        self.every_n_steps = check_interval(every_n_steps)
        self.bins = bins

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or not is_logging_step(step, self.every_n_steps or trainer.log_every_n_steps):
            return
        keys: list[tuple[str, str]] = []
        tensors: list[Tensor] = []
        for layer in parameter_layers(pl_module):
            grads = [p.grad for p in layer.params if p.grad is not None]
            for kind, parts in (("grad", grads), ("weight", [p.detach() for p in layer.params])):
                if parts:
                    keys.append((kind, layer.name))
                    tensors.append(torch.cat([t.detach().float().flatten() for t in parts]))
        if not tensors:
            return
        named = list(zip(keys, finite_histograms(tensors, self.bins), strict=True))
        emit(trainer, {f"{kind}/nonfinite/{name}": h.nonfinite for (kind, name), h in named}, step)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                for (kind, name), h in named:
                    if h.num:
                        logger.experiment.add_histogram_raw(
                            f"{kind}_hist/{name}",
                            min=h.edges[0],
                            max=h.edges[-1],
                            num=h.num,
                            sum=h.total,
                            sum_squares=h.total_sq,
                            bucket_limits=h.edges[1:],
                            bucket_counts=h.counts,
                            global_step=step,
                        )
            elif isinstance(logger, WandbLogger):
                import numpy as np
                import wandb

                charts = {
                    f"{kind}_hist/{name}": wandb.Histogram(np_histogram=(np.array(h.counts), np.array(h.edges)))
                    for (kind, name), h in named
                }
                logger.experiment.log({**charts, "trainer/global_step": step})
