"""The post-clip total gradient norm, without a second pass over the gradients where that is provably exact.

After ``on_before_optimizer_step`` has measured the pre-clip norm, one of three things happens to the
gradients before ``on_train_batch_end`` can look at them again:

- nothing (no clipping): post = pre;
- Lightning's own norm clipping, and nothing else: torch's ``clip_grads_with_norm_`` multiplies every
  gradient by min(1, c / (pre + 1e-6)), so post = pre · that coefficient;
- anything else (value clipping, a rule in ``configure_gradient_clipping``, an optimizer writing into
  ``.grad``): the gradients are measured again.

Which case it was is read, not assumed: every in-place write bumps a tensor's version counter, so the
(identity, version) pairs of the gradients tell whether they were touched, and a wrapper around the
precision plugin's ``clip_gradients`` sees Lightning's own clipping calls and checks that they were the
only writes. On the CPU MLP of scripts/bench.py the second pass would cost as much as the first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.enums import GradClipAlgorithmType
from torch import Tensor, nn
from torch.optim import Optimizer

from src.callbacks.grad_stats import layer_grad_norms

Versions = tuple[tuple[int, int], ...]


def grad_versions(params: Sequence[nn.Parameter]) -> Versions:
    """(id, version counter) of each parameter's gradient; (0, -1) where there is none."""
    return tuple((id(g), g._version) if (g := p.grad) is not None else (0, -1) for p in params)


class PostClipNorm:
    """Per step: ``start`` after the pre-clip measurement, ``total`` once the optimizer has stepped."""

    def __init__(self) -> None:
        self._params: Sequence[nn.Parameter] = ()
        self._pre: Tensor | None = None
        self._versions: Versions = ()
        self._norm_clip: float | None = None  # Lightning clipped by norm with this threshold, and only that
        self._plugin: Any = None

    def attach(self, trainer: L.Trainer) -> None:
        """Wrap the precision plugin's ``clip_gradients`` (an instance attribute, removed by ``detach``)."""
        plugin = trainer.precision_plugin
        original: Callable[..., None] = plugin.clip_gradients

        def clip_gradients(
            optimizer: Optimizer,
            clip_val: float = 0.0,
            gradient_clip_algorithm: GradClipAlgorithmType = GradClipAlgorithmType.NORM,
        ) -> None:
            untouched = self._pre is not None and grad_versions(self._params) == self._versions
            original(optimizer, clip_val, gradient_clip_algorithm)
            if not (untouched and clip_val > 0 and gradient_clip_algorithm == GradClipAlgorithmType.NORM):
                return
            # the threshold applies to the norm over the optimizer's parameters: the same norm as ``pre``
            # only if they are the parameters that were measured
            clipped = {id(p) for group in optimizer.param_groups for p in group["params"] if p.grad is not None}
            if clipped == {id(p) for p in self._params if p.grad is not None}:
                self._norm_clip, self._versions = float(clip_val), grad_versions(self._params)

        plugin.clip_gradients = clip_gradients
        self._plugin = plugin

    def detach(self) -> None:
        if self._plugin is not None and "clip_gradients" in vars(self._plugin):
            del self._plugin.clip_gradients
        self._plugin = None

    def start(self, params: Sequence[nn.Parameter], pre_total: Tensor) -> None:
        self._params, self._pre, self._norm_clip = params, pre_total, None
        self._versions = grad_versions(params)

    def total(self, pl_module: nn.Module) -> Tensor:
        """The total gradient norm now, after clipping (and the optimizer step)."""
        pre, self._pre = self._pre, None
        if pre is not None and all(p.grad is None for p in self._params):
            return torch.full_like(pre, float("nan"))  # the step was skipped (the guard removed the gradients)
        if pre is None or grad_versions(self._params) != self._versions:
            return layer_grad_norms(pl_module).total_norm  # written to some other way: measure
        if self._norm_clip is None:
            return pre  # not written to at all
        # the coefficient of torch.nn.utils.clip_grads_with_norm_
        return pre * torch.clamp(self._norm_clip / (pre + 1e-6), max=1.0)
