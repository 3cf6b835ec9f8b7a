"""GradNormMonitor: total gradient norm before and after clipping, share of steps clipped, per-layer norms.

Where each number is read (Lightning 2.6 order: backward -> [AMP unscale] -> on_before_optimizer_step ->
configure_gradient_clipping -> optimizer update -> on_train_batch_end):

- pre-clip, in ``on_before_optimizer_step``: fully accumulated, all-reduced under DDP, unscaled under AMP;
  computed once per step by ``src.grad_norms.step_grad_norms`` and shared with the divergence guard and the
  clipping itself;
- post-clip, in ``on_train_batch_end`` of the batch that stepped. A LightningModule that implements
  ``src.clipping.ReportsClipping`` (gradlab's does) says what its clipping did, and the post-clip norm comes
  from there. Any other LightningModule (Lightning's own ``gradient_clip_val``, a custom
  ``configure_gradient_clipping``) gets it measured here: the gradients are still there, clipped (they are
  zeroed in the next step's closure), and untouched gradients (version counters unchanged) are not read again.
  Accumulation micro-batches that did not step are ignored.

Between logging steps nothing is computed: each step's pre- and post-clip totals are kept as the tensors they
are (on device), and a logging step reduces them (max, clipped count) and moves its metrics to the host in one
transfer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.optim import Optimizer
from typing_extensions import override

from src.callbacks.schedule import Monitor
from src.clipping.apply import ClipReport, norm_clipped, reports_clipping
from src.grad_norms import GradStats, Versions, grad_norms, grad_versions, step_grad_norms

# a step counts as clipped when clipping shrank the total norm by more than float rounding
CLIPPED_RTOL = 1e-6


class GradNormMonitor(Monitor):
    """Logs, on the logging steps of ``src.callbacks.schedule`` (step 0 included):

    - ``grad/norm_total_preclip`` and ``grad/norm_total_postclip``: 2-norm over all gradients;
    - ``grad/clipped_fraction``: share of the optimizer steps since the last log whose norm clipping reduced;
    - ``grad/norm_max_since_log``: largest pre-clip total norm since the last log (NaN-skipping max);
    - ``grad/nonfinite_layers``: number of layers whose pre-clip gradient holds a NaN or inf;
    - ``grad/layer/<layer>`` and ``grad/recurrent/<module>.weight_{ih,hh}_l<k>`` (``per_layer``): pre-clip norm
      of each layer (src/grad_norms.py: a module that owns parameters) and of each recurrent weight matrix;
    - whatever a ``ReportsClipping`` module's report carries in ``metrics`` (a clipping rule's
      ``clip/threshold``, ``clip/scale``, ...), under its own keys.

    Args:
        every_n_steps: logging interval in optimizer steps; None uses the Trainer's ``log_every_n_steps``.
        per_layer: also log the per-layer and per-matrix norms.

    Raises:
        ValueError: ``every_n_steps`` < 1.

    The per-step norms accumulate in float32 (``torch._foreach_norm``): gradient entries below ~1e-19 square to
    0 there, so a layer whose every entry is that small reads 0.
    """

    def __init__(self, every_n_steps: int | None = None, per_layer: bool = True) -> None:
        super().__init__(every_n_steps)
        self.per_layer = per_layer
        self._pre: GradStats | None = None
        self._versions: Versions | None = None  # the gradients as measured, for a module without a report
        # (max pre-clip norm, steps clipped) of the windows already logged, over the whole fit, on device
        self._run: tuple[Tensor, Tensor] | None = None
        self.run_steps = 0
        # the steps since the last log, as the tensors they came with (no kernel until they are logged):
        self._totals: list[Tensor] = []  # pre-clip total norm of each step
        self._rewritten: list[tuple[Tensor, Tensor]] = []  # (pre, post) of each step whose gradients changed
        self._norm_clipped: dict[float, list[Tensor]] = {}  # norm clipping's threshold -> pre of its steps

    def _since_log(self) -> tuple[Tensor, Tensor] | None:
        """(largest pre-clip total norm, steps clipped) over the steps since the last log, None before a step."""
        if not self._totals:
            return None
        totals = torch.stack(self._totals)
        largest = torch.where(totals.isnan(), -torch.inf, totals).amax()  # NaN-skipping: one NaN hides nothing
        largest = torch.where(totals.isnan().all(), torch.nan, largest)
        pairs = [torch.stack(pair) for pair in self._rewritten]
        for max_norm, pres in self._norm_clipped.items():  # post-clip derived here, for the window at once
            pre = torch.stack(pres)
            pairs.append(torch.stack([pre, norm_clipped(pre, max_norm)], dim=1))
        clipped = torch.zeros_like(largest)
        if pairs:
            pre, post = torch.cat([p.reshape(-1, 2) for p in pairs]).unbind(1)
            clipped = (post < pre * (1 - CLIPPED_RTOL)).sum().to(largest.dtype)
        return largest, clipped

    def _with_run(self, current: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor] | None:
        """(max, clipped) of the windows already logged and ``current`` together."""
        if current is None or self._run is None:
            return current or self._run
        return torch.fmax(self._run[0], current[0]), self._run[1] + current[1]

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pre, self._run, self.run_steps = None, None, 0
        self._totals, self._rewritten, self._norm_clipped = [], [], {}

    def run_totals(self) -> dict[str, float]:
        """Largest pre-clip total norm and number of clipped steps over the whole fit (one host transfer)."""
        totals = self._with_run(self._since_log())
        if totals is None:
            return {"max_grad_norm": float("nan"), "steps_clipped": 0, "optimizer_steps": 0}
        max_norm, clipped = torch.stack([t.float() for t in totals]).tolist()
        return {"max_grad_norm": max_norm, "steps_clipped": int(clipped), "optimizer_steps": self.run_steps}

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        self._pre = step_grad_norms(trainer, pl_module)
        self._versions = None if reports_clipping(pl_module) else grad_versions(self._pre.params)

    def _postclip(
        self, pl_module: L.LightningModule, pre: GradStats
    ) -> tuple[Tensor | float, bool, Mapping[str, Tensor]]:
        """(post-clip total norm, whether the gradients were rewritten, the clipping's own metrics); the norm
        clipping's threshold (a float) in place of the post-clip norm when it is derived from it."""
        if not pre.grads():  # the step was skipped (the guard removed the gradients)
            return torch.full_like(pre.total_norm, float("nan")), False, {}
        report: ClipReport | None = None
        if reports_clipping(pl_module):
            report = pl_module.clip_report()
            report = report if report is not None and report.step == pre.step else None
        if report is not None:
            if not report.rewritten:
                return pre.total_norm, False, report.metrics
            if report.postclip_norm is not None:
                return report.postclip_norm, True, report.metrics
            if report.max_norm is not None:
                return report.max_norm, True, report.metrics
            return grad_norms(pl_module).total_norm, True, report.metrics  # not derived (value clipping)
        if self._versions is not None and grad_versions(pre.params) == self._versions:
            return pre.total_norm, False, {}  # no report, and nothing wrote to the gradients
        return grad_norms(pl_module).total_norm, True, {}  # clipped some other way: measure

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        pre, self._pre = self._pre, None
        if pre is None:  # an accumulation micro-batch: no optimizer step was taken
            return
        post, rewritten, clip_metrics = self._postclip(pl_module, pre)
        self._totals.append(pre.total_norm)
        if isinstance(post, float):  # norm clipping to this threshold: the post-clip norm is derived when logged
            self._norm_clipped.setdefault(post, []).append(pre.total_norm)
        elif rewritten:  # else not clipped: nothing to count
            self._rewritten.append((pre.total_norm, post))
        self.run_steps += 1
        if not self.logs_at(trainer, pre.step):
            return
        if isinstance(post, float):
            post = norm_clipped(pre.total_norm, post)
        steps = len(self._totals)
        since_log = self._since_log()
        assert since_log is not None
        largest, clipped = since_log
        metrics: dict[str, Tensor | float] = {
            "grad/norm_total_preclip": pre.total_norm,
            "grad/norm_total_postclip": post,
            "grad/clipped_fraction": clipped / steps,
            "grad/norm_max_since_log": largest,
            "grad/nonfinite_layers": (~torch.isfinite(pre.layer_norms)).sum(),
        }
        if self.per_layer:
            metrics.update(pre.as_dict("grad"))
        metrics.update(clip_metrics)
        self.emit(trainer, metrics, pre.step)
        self._run = self._with_run(since_log)
        self._totals, self._rewritten, self._norm_clipped = [], [], {}
