"""What every clipping rule shares: it rescales ``.grad`` in place, on device, from the step's shared norms.

A rule gets the step's pre-clip norms (``src.grad_norms.GradStats``: per layer, per recurrent matrix and in
total, computed once for the monitors, the guard and the rules alike) and returns the post-clip total norm
and what it did as 0-d tensors — ``clip/threshold`` and ``clip/scale`` (post-clip over pre-clip norm of the
gradients it acts on) at least — that GradNormMonitor logs; nothing is moved to the host per step. Rules run
from ``src/clipping/apply.py``, which also handles a step without any gradient (they never see one).
Rules are ``nn.Module``s holding buffers only: stateful rules (AutoClip, ZClip) are saved in checkpoints with
the LightningModule and resume with the same thresholds, and move to the training device with it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import torch
from torch import Tensor, nn

from src.grad_norms import GradStats

EPS = 1e-6  # torch.nn.utils.clip_grads_with_norm_ uses the same guard against division by zero


class Clipped(NamedTuple):
    """What a rule did: the total gradient norm after it, and its metrics (0-d tensors, logged as they are)."""

    postclip_norm: Tensor
    metrics: dict[str, Tensor]


def scale_to(grads: list[Tensor], norm: Tensor, threshold: Tensor | float) -> Tensor:
    """Rescale ``grads`` so their joint norm is at most ``threshold`` (Pascanu et al. 2013, Algorithm 1)."""
    coef = torch.clamp(threshold / (norm + EPS), max=1.0)
    if grads:
        torch._foreach_mul_(grads, coef.to(grads[0].dtype))
    return coef


class ClipRule(nn.Module, ABC):
    """A clipping rule: ``rule(stats)`` clips the gradients that ``stats`` measured, in place."""

    @abstractmethod
    def clip(self, stats: GradStats) -> Clipped:
        """Clip in place (every measured parameter has a gradient here); say what was done."""

    def forward(self, stats: GradStats) -> Clipped:
        return self.clip(stats)
