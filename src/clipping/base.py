"""What every clipping rule shares: it reads and rewrites ``.grad`` in place, on device, and reports what it did.

Rules run inside ``GradLabModule.configure_gradient_clipping``, where Lightning guarantees the gradients are
accumulated, all-reduced under DDP (identical on every rank, so every rank computes the same threshold) and
unscaled under AMP. Each call returns 0-d tensors — ``clip/threshold`` and ``clip/scale`` (post-clip over
pre-clip total norm) at least — that GradNormMonitor logs; nothing is moved to the host per step.
Rules are ``nn.Module``s holding buffers only: stateful rules (AutoClip, ZClip) are saved in checkpoints with
the LightningModule and resume with the same thresholds, and move to the training device with it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from src.callbacks.grad_stats import parameter_layers

EPS = 1e-6  # torch.nn.utils.clip_grads_with_norm_ uses the same guard against division by zero


def grads_of(params: list[nn.Parameter]) -> list[Tensor]:
    return [p.grad for p in params if p.grad is not None]


def total_norm(grads: list[Tensor]) -> Tensor:
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0, dtype=torch.float32)))


def scale_to(grads: list[Tensor], norm: Tensor, threshold: Tensor | float) -> Tensor:
    """Rescale ``grads`` so their joint norm is at most ``threshold`` (Pascanu et al. 2013, Algorithm 1)."""
    coef = torch.clamp(threshold / (norm + EPS), max=1.0)
    if grads:
        torch._foreach_mul_(grads, coef.to(grads[0].dtype))
    return coef


class ClipRule(nn.Module, ABC):
    """A clipping rule: ``rule(module)`` clips the gradients of ``module``'s parameters in place."""

    @abstractmethod
    def clip(self, module: nn.Module) -> dict[str, Tensor]:
        """Clip in place; return what was done as 0-d tensors (``clip/threshold``, ``clip/scale``, ...)."""

    def forward(self, module: nn.Module) -> dict[str, Tensor]:
        # no gradient at all: a step the divergence guard skipped (gradients set to None). Nothing to clip,
        # and stateful rules must not record it as a norm of 0 in their history.
        if all(p.grad is None for p in module.parameters()):
            return {}
        return self.clip(module)


def layers_of(module: nn.Module) -> list[list[nn.Parameter]]:
    return [list(layer.params) for layer in parameter_layers(module)]
