"""Adaptive gradient clipping, AGC (Brock, De, Smith & Simonyan 2021, "High-Performance Large-Scale Image
Recognition Without Normalization", §4).

Unit-wise: for every output unit i of a layer, G_i <- λ·(||W_i||* / ||G_i||)·G_i when ||G_i|| / ||W_i||* > λ,
with ||W_i||* = max(||W_i||, ε), ε = 1e-3 so zero-initialised weights can still move. A unit is a row of an
``nn.Linear`` weight (PyTorch stores (out, in), so the norm runs over every dimension but the first; JAX/optax
store (in, out) and reduce over axis 0); biases and other vectors are one unit each. The paper: "it is always
better to not clip the final linear layer", so the last layer is left alone by default. λ should be smaller
for larger batches (0.01 at batch 4096 in the paper; they studied 0.01–0.16).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from src.clipping.base import ClipRule, layers_of, total_norm


def unitwise_norm(t: Tensor) -> Tensor:
    if t.ndim <= 1:
        return torch.linalg.vector_norm(t.float()).expand_as(t)
    return torch.linalg.vector_norm(t.float(), dim=tuple(range(1, t.ndim)), keepdim=True)


class AdaptiveGradClip(ClipRule):
    def __init__(self, clipping: float = 0.01, eps: float = 1e-3, exclude_final: bool = True) -> None:
        super().__init__()
        self.clipping, self.eps, self.exclude_final = clipping, eps, exclude_final

    def clip(self, module: nn.Module) -> dict[str, Tensor]:
        layers = layers_of(module)
        if self.exclude_final and len(layers) > 1:
            layers = layers[:-1]
        params = [p for layer in layers for p in layer if p.grad is not None]
        grads = [p.grad for p in params]
        before = total_norm(grads)
        for p in params:
            max_norm = unitwise_norm(p.detach()).clamp_min(self.eps) * self.clipping
            g_norm = unitwise_norm(p.grad)
            factor = torch.where(g_norm > max_norm, max_norm / g_norm.clamp_min(1e-6), torch.ones_like(g_norm))
            p.grad.mul_(factor.to(p.grad.dtype))
        after = total_norm(grads)
        return {"clip/threshold": torch.full_like(before, self.clipping), "clip/scale": after / (before + 1e-12)}
