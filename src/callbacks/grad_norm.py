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

Every per-step number stays on device (running max, clipped count); one host transfer per logging step.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.optim import Optimizer
from typing_extensions import override

from src.callbacks.schedule import Monitor
from src.clipping.apply import ClipReport, reports_clipping
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
        self._max: Tensor | None = None  # the same two over the steps since the last log
        self._clipped: Tensor | None = None  # None: no step clipped
        self._steps_since_log = 0

    def _window(self) -> tuple[Tensor, Tensor] | None:
        """(max, clipped) of the logged windows and the current one together: no work on non-logging steps."""
        if self._max is None:
            return self._run
        clipped = torch.zeros_like(self._max) if self._clipped is None else self._clipped
        if self._run is None:
            return self._max, clipped
        return torch.fmax(self._run[0], self._max), self._run[1] + clipped

    def _reset(self) -> None:
        self._run = self._window()
        self._max, self._clipped, self._steps_since_log = None, None, 0

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pre, self._run, self.run_steps = None, None, 0
        self._max, self._clipped, self._steps_since_log = None, None, 0

    def run_totals(self) -> dict[str, float]:
        """Largest pre-clip total norm and number of clipped steps over the whole fit (one host transfer)."""
        totals = self._window()
        if totals is None:
            return {"max_grad_norm": float("nan"), "steps_clipped": 0, "optimizer_steps": 0}
        max_norm, clipped = torch.stack([t.float() for t in totals]).tolist()
        return {"max_grad_norm": max_norm, "steps_clipped": int(clipped), "optimizer_steps": self.run_steps}

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        self._pre = step_grad_norms(trainer, pl_module)
        self._versions = None if reports_clipping(pl_module) else grad_versions(self._pre.params)

    def _postclip(self, pl_module: L.LightningModule, pre: GradStats) -> tuple[Tensor, bool, dict[str, Tensor]]:
        """(post-clip total norm, whether the gradients were rewritten, the clipping's own metrics)."""
        if not pre.grads():  # the step was skipped (the guard removed the gradients)
            return torch.full_like(pre.total_norm, float("nan")), False, {}
        report: ClipReport | None = None
        if reports_clipping(pl_module):
            report = pl_module.clip_report()
            report = report if report is not None and report.step == pre.step else None
        if report is not None:
            if not report.rewritten:
                return pre.total_norm, False, dict(report.metrics)
            if report.postclip_norm is not None:
                return report.postclip_norm, True, dict(report.metrics)
            return grad_norms(pl_module).total_norm, True, dict(report.metrics)  # not derived (value clipping)
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
        # fmax: one NaN step does not hide the others
        self._max = pre.total_norm if self._max is None else torch.fmax(self._max, pre.total_norm)
        if rewritten:  # else not clipped: nothing to add
            clipped = (post < pre.total_norm * (1 - CLIPPED_RTOL)).float()
            self._clipped = clipped if self._clipped is None else self._clipped + clipped
        self._steps_since_log += 1
        self.run_steps += 1
        if not self.logs_at(trainer, pre.step):
            return
        metrics: dict[str, Tensor | float] = {
            "grad/norm_total_preclip": pre.total_norm,
            "grad/norm_total_postclip": post,
            "grad/clipped_fraction": 0.0 if self._clipped is None else self._clipped / self._steps_since_log,
            "grad/norm_max_since_log": self._max,
            "grad/nonfinite_layers": (~torch.isfinite(pre.layer_norms)).sum(),
        }
        if self.per_layer:
            metrics.update(pre.as_dict("grad"))
        metrics.update(clip_metrics)
        self.emit(trainer, metrics, pre.step)
        self._reset()
