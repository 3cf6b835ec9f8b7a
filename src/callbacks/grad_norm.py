"""GradNormMonitor: total gradient norm before and after clipping, share of steps clipped, per-layer norms.

Where each number is read (Lightning 2.6 order: backward -> [AMP unscale] -> on_before_optimizer_step ->
configure_gradient_clipping -> optimizer update -> on_train_batch_end):

- pre-clip, in ``on_before_optimizer_step``: fully accumulated, all-reduced under DDP, unscaled under AMP;
  computed once per step by ``pre_clip_grad_stats`` and shared with the divergence guard;
- post-clip, in ``on_train_batch_end`` of the batch that stepped: the clipped gradients are still there
  (they are zeroed in the next step's closure). Accumulation micro-batches that did not step are ignored.
  Where no second pass is needed (no clipping, or Lightning's norm clipping alone) post_clip.py derives it
  exactly from the pre-clip norm.

Every per-step number stays on device (running max, clipped count); one host transfer per logging step.
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
from src.callbacks.grad_stats import GradStats, pre_clip_grad_stats
from src.callbacks.post_clip import PostClipNorm

# a step counts as clipped when clipping shrank the total norm by more than float rounding
CLIPPED_RTOL = 1e-6


class GradNormMonitor(Callback):
    """Logs, at every ``every_n_steps``-th optimizer step (0-based, so the gradient at initialisation is in):

    - ``grad/norm_total_preclip`` and ``grad/norm_total_postclip``: 2-norm over all gradients;
    - ``grad/clipped_fraction``: share of the optimizer steps since the last log whose norm clipping reduced;
    - ``grad/norm_max_since_log``: largest pre-clip total norm since the last log (NaN-skipping max);
    - ``grad/nonfinite_layers``: number of layers whose pre-clip gradient holds a NaN or inf;
    - ``grad/layer/<module name>`` (``per_layer``): pre-clip norm of each module that owns parameters, in
      network order (recurrent modules split per weight matrix, see ``grad_stats.parameter_layers``).

    Custom clipping rules: a LightningModule whose ``configure_gradient_clipping`` sets the attribute
    ``clip_stats`` to a dict of 0-d tensors (or floats), e.g. ``{"clip/threshold": t, "clip/scale": s}``,
    gets those logged unchanged, under their own keys, at the same logging steps. The values of the step
    being logged are used, so set them on every step (tensors, no ``.item()``: they reach the host here).

    ``every_n_steps``: logging interval in optimizer steps; None uses the Trainer's ``log_every_n_steps``.
    The per-step norms accumulate in float32 (``torch._foreach_norm``): gradient entries below ~1e-19
    square to 0 there, so a layer whose every entry is that small reads 0.
    """

    def __init__(self, every_n_steps: int | None = None, per_layer: bool = True) -> None:
        self.every_n_steps = check_interval(every_n_steps)
        self.per_layer = per_layer
        self._pre: GradStats | None = None
        self._post = PostClipNorm()
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
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._post.detach()
            self._post.attach(trainer)

    @override
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._post.detach()

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
        self._pre = pre_clip_grad_stats(trainer, pl_module, optimizer)
        self._post.start(self._pre.params, self._pre.total_norm)

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        pre, self._pre = self._pre, None
        if pre is None:  # an accumulation micro-batch: no optimizer step was taken
            return
        post = self._post.total(pl_module)
        # fmax: one NaN step does not hide the others
        self._max = pre.total_norm if self._max is None else torch.fmax(self._max, pre.total_norm)
        if post is not pre.total_norm:  # the gradients were written to (else: not clipped, nothing to add)
            clipped = (post < pre.total_norm * (1 - CLIPPED_RTOL)).float()
            self._clipped = clipped if self._clipped is None else self._clipped + clipped
        self._steps_since_log += 1
        self.run_steps += 1
        if not is_logging_step(pre.step, self.every_n_steps or trainer.log_every_n_steps):
            return
        metrics: dict[str, Tensor | float] = {
            "grad/norm_total_preclip": pre.total_norm,
            "grad/norm_total_postclip": post,
            "grad/clipped_fraction": 0.0 if self._clipped is None else self._clipped / self._steps_since_log,
            "grad/norm_max_since_log": self._max,
            "grad/nonfinite_layers": (~torch.isfinite(pre.layer_norms)).sum(),
        }
        if self.per_layer:
            metrics.update(pre.as_dict("grad/layer/"))
        metrics.update(getattr(pl_module, "clip_stats", None) or {})
        emit(trainer, metrics, pre.step)
        self._reset()
