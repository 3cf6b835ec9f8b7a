"""Layer-wise norm clipping (the seed article's "applying clipping on individual layer gradients"): each layer's
gradient norm is capped at ``max_norm`` on its own, so one exploding layer no longer shrinks the update of
every other layer, as global clipping does (the seed's question 4). A layer is a module that owns parameters
(recurrent modules split per weight matrix), as in the telemetry. Keras's ``clipnorm`` is the per-tensor form.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from src.clipping.base import EPS, ClipRule, grads_of, layers_of, total_norm


class LayerwiseNormClip(ClipRule):
    def __init__(self, max_norm: float = 1.0) -> None:
        super().__init__()
        self.max_norm = max_norm

    def clip(self, module: nn.Module) -> dict[str, Tensor]:
        layers = [grads_of(params) for params in layers_of(module)]
        layers = [g for g in layers if g]
        all_grads = [g for layer in layers for g in layer]
        before = total_norm(all_grads)
        norms = torch.stack([total_norm(layer) for layer in layers])  # (L,)
        coefs = torch.clamp(self.max_norm / (norms + EPS), max=1.0)
        for layer, coef in zip(layers, coefs.unbind(0), strict=True):
            torch._foreach_mul_(layer, coef.to(layer[0].dtype))
        after = torch.linalg.vector_norm(norms * coefs)
        return {
            "clip/threshold": torch.full_like(before, self.max_norm),
            "clip/scale": after / (before + 1e-12),
            "clip/layers_clipped": (coefs < 1).sum(),
        }
