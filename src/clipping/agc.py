"""Adaptive gradient clipping, AGC (Brock, De, Smith & Simonyan 2021, "High-Performance Large-Scale Image
Recognition Without Normalization", §4).

Unit-wise: for every output unit i of a layer, G_i <- λ·(||W_i||* / ||G_i||)·G_i when ||G_i|| / ||W_i||* > λ,
with ||W_i||* = max(||W_i||, ε), ε = 1e-3 so zero-initialised weights can still move. A unit is a row of an
``nn.Linear`` weight (PyTorch stores (out, in), so the norm runs over every dimension but the first; JAX/optax
store (in, out) and reduce over axis 0); biases and other vectors are one unit each. The paper: "it is always
better to not clip the final linear layer", so the last layer is left alone by default. λ should be smaller
for larger batches (0.01 at batch 4096 in the paper; they studied 0.01–0.16). The unit norms are finer than
the step's shared per-layer norms, so AGC reads the gradients it clips once more; the post-clip norm follows
from the unit norms and factors without a further pass.
"""

from __future__ import annotations

import torch
from torch import Tensor

from src.clipping.base import Clipped, ClipRule
from src.grad_norms import GradStats


def unitwise_norm(t: Tensor) -> Tensor:
    """The 2-norm of every output unit of ``t`` (its rows), broadcastable to ``t``; vectors are one unit."""
    if t.ndim <= 1:
        return torch.linalg.vector_norm(t.float()).expand_as(t)
    return torch.linalg.vector_norm(t.float(), dim=tuple(range(1, t.ndim)), keepdim=True)


class AdaptiveGradClip(ClipRule):
    """Clip each unit's gradient to ``clipping`` times its weight norm.

    Args:
        clipping: λ, the largest ||G_i|| / max(||W_i||, eps) a unit keeps.
        eps: the floor of a unit's weight norm.
        exclude_final: leave the last layer unclipped (the paper's advice).
    """

    def __init__(self, clipping: float = 0.01, eps: float = 1e-3, exclude_final: bool = True) -> None:
        super().__init__()
        self.clipping, self.eps, self.exclude_final = clipping, eps, exclude_final

    def clip(self, stats: GradStats) -> Clipped:
        n_layers = len(stats.index.layers)
        clipped = n_layers - 1 if self.exclude_final and n_layers > 1 else n_layers
        kept_sq = stats.layer_norms[clipped:].square().sum()  # the excluded layer, unchanged
        before = torch.linalg.vector_norm(stats.layer_norms[:clipped])
        after_sq = torch.zeros_like(before)
        for layer in stats.index.layers[:clipped]:
            for p in layer.params:
                if p.grad is None:
                    continue
                max_norm = unitwise_norm(p.detach()).clamp_min(self.eps) * self.clipping
                g_norm = unitwise_norm(p.grad)
                factor = torch.where(g_norm > max_norm, max_norm / g_norm.clamp_min(1e-6), torch.ones_like(g_norm))
                p.grad.mul_(factor.to(p.grad.dtype))
                unit_after = factor * g_norm  # each unit's norm after clipping (a vector: one unit, expanded)
                after_sq = after_sq + (unit_after.flatten()[0].square() if p.ndim <= 1 else unit_after.square().sum())
        after = after_sq.sqrt()
        metrics = {"clip/threshold": torch.full_like(before, self.clipping), "clip/scale": after / (before + 1e-12)}
        return Clipped((after_sq + kept_sq).sqrt(), metrics)
