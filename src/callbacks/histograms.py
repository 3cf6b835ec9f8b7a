"""HistogramMonitor: histograms of each layer's gradients and weights, non-finite values counted, not dropped.

wandb.watch removes NaN/inf before binning and skips a tensor with no finite value at all, which hides the
very step where a run explodes. Here the finite values are binned with ``torch.histc`` on device and the
non-finite ones are counted and logged as metrics (``grad/nonfinite/<layer>``, ``weight/nonfinite/<layer>``)
to every logger. Histograms go to W&B (``wandb.Histogram``, tagged ``grad_hist/<layer>``) and TensorBoard
(``add_histogram_raw``) when those loggers are attached; W&B is imported only then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor
from torch.optim import Optimizer
from typing_extensions import override

from src.callbacks.schedule import Monitor
from src.grad_norms import layer_index


@dataclass
class Histogram:
    """One tensor's histogram over its finite values, on the host, with its non-finite count."""

    counts: list[float]  # (bins,)
    edges: list[float]  # (bins + 1,)
    num: float  # number of finite values, their sum and sum of squares (TensorBoard wants them)
    total: float
    total_sq: float
    nonfinite: int


def _moments(t: Tensor) -> Tensor:
    """(min, max, sum, sum of squares) of a flat fp32 tensor; all finite iff it holds no NaN/inf (or the
    sum of squares overflowed, which the exact path below handles the same way)."""
    lo, hi = torch.aminmax(t)
    return torch.stack([lo, hi, t.sum(), torch.dot(t, t)])


def _finite_moments(t: Tensor) -> Tensor:
    """(min, max, sum, sum of squares, count) over the finite values only: the exact, slower path."""
    finite = torch.isfinite(t)
    inf = torch.full((), float("inf"), device=t.device)
    kept = torch.where(finite, t, 0.0)
    return torch.stack(
        [torch.where(finite, t, inf).min(), torch.where(finite, t, -inf).max(), kept.sum(), kept.square().sum(),
         finite.sum().float()]
    )  # fmt: skip


def finite_histograms(groups: list[list[Tensor]], bins: int) -> list[Histogram]:
    """One histogram per group of tensors (e.g. a layer's weight and bias), over their finite values.

    Common case, no NaN/inf anywhere: two host transfers for all groups together (ranges, then counts) and
    four passes over the data (aminmax, sum, dot, histc). Tensors holding non-finite values take a third
    transfer and a masked path, so those values are counted, and kept out of the bins and moments.
    """
    flat = [[t.detach().float().reshape(-1) for t in group if t.numel()] for group in groups]
    tensors = [t for group in flat for t in group]
    if not tensors:
        return []
    # per tensor: [min, max, sum, sum of squares, number of finite values]
    fast = torch.stack([_moments(t) for t in tensors]).tolist()
    moments = [[*row, float(t.numel())] for t, row in zip(tensors, fast, strict=True)]
    bad = [i for i, row in enumerate(moments) if not all(map(math.isfinite, row))]
    if bad:
        exact = torch.stack([_finite_moments(tensors[i]) for i in bad]).tolist()
        for i, row in zip(bad, exact, strict=True):
            moments[i] = row
    histograms, counts, first = [], [], 0
    for group in flat:
        rows, first = moments[first : first + len(group)], first + len(group)
        lo, hi = min((r[0] for r in rows), default=math.inf), max((r[1] for r in rows), default=-math.inf)
        if not lo <= hi:  # no finite value at all: an empty histogram, the count says why
            lo, hi = 0.0, 1.0
        elif hi == lo:  # histc needs a range of positive width
            lo, hi = lo - 0.5, hi + 0.5
        # histc skips NaN and values outside [lo, hi]: the infinities fall out here
        group_counts = torch.zeros(bins, device=tensors[0].device)
        for t in group:
            group_counts += torch.histc(t, bins=bins, min=lo, max=hi)
        counts.append(group_counts)
        num = sum(r[4] for r in rows)
        histograms.append(
            Histogram(
                counts=[],
                edges=torch.linspace(lo, hi, bins + 1).tolist(),
                num=num,
                total=sum(r[2] for r in rows),
                total_sq=sum(r[3] for r in rows),
                nonfinite=sum(t.numel() for t in group) - int(num),
            )
        )
    for histogram, row in zip(histograms, torch.stack(counts).tolist(), strict=True):
        histogram.counts = row
    return histograms


class HistogramMonitor(Monitor):
    """On the logging steps of ``src.callbacks.schedule`` (step 0 included), per layer (src/grad_norms.py:
    modules that own parameters): the histogram of its pre-clip gradient and of its weights, ``bins`` bins
    over the finite range (``grad_hist/<layer>``, ``weight_hist/<layer>`` in W&B and TensorBoard), plus
    ``grad/nonfinite/<layer>`` and ``weight/nonfinite/<layer>``, the number of NaN/inf entries, to every logger.
    Rank 0 only.

    Args:
        every_n_steps: logging interval in optimizer steps; None uses the Trainer's ``log_every_n_steps``.
        bins: bins per histogram.

    Raises:
        ValueError: ``every_n_steps`` or ``bins`` < 1.
    """

    def __init__(self, every_n_steps: int | None = None, bins: int = 64) -> None:
        super().__init__(every_n_steps)
        if bins < 1:
            raise ValueError(f"bins={bins} is not allowed; expected an integer >= 1")
        self.bins = bins

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        step = self.upcoming_step(trainer)
        if not self.logs_at(trainer, step) or not self.on_logging_rank(trainer):
            return
        keys: list[tuple[str, str]] = []
        groups: list[list[Tensor]] = []
        for layer in layer_index(pl_module).layers:
            grads = [p.grad for p in layer.params if p.grad is not None]
            for kind, parts in (("grad", grads), ("weight", list(layer.params))):
                if parts:
                    keys.append((kind, layer.name))
                    groups.append(parts)
        named = list(zip(keys, finite_histograms(groups, self.bins), strict=True))
        if not named:
            return
        self.emit(trainer, {f"{kind}/nonfinite/{name}": h.nonfinite for (kind, name), h in named}, step)
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
