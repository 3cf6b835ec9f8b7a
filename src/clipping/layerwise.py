"""Layer-wise norm clipping (the seed article's "applying clipping on individual layer gradients"): each layer's
gradient norm is capped at ``max_norm`` on its own, so one exploding layer no longer shrinks the update of
every other layer, as global clipping does (the seed's question 4). A layer is a module that owns parameters,
as in the telemetry (src/grad_norms.py; a recurrent module is one layer). Keras's ``clipnorm`` is the
per-tensor form.
"""

from __future__ import annotations

import torch

from src.clipping.base import EPS, Clipped, ClipRule
from src.grad_norms import GradStats


class LayerwiseNormClip(ClipRule):
    """Cap every layer's gradient norm at ``max_norm``.

    Args:
        max_norm: the largest 2-norm a layer's gradient keeps.
    """

    def __init__(self, max_norm: float = 1.0) -> None:
        super().__init__()
        self.max_norm = max_norm

    def clip(self, stats: GradStats) -> Clipped:
        norms = stats.layer_norms  # (L,) from the step's shared computation
        coefs = torch.clamp(self.max_norm / (norms + EPS), max=1.0)
        for layer, coef in zip(stats.index.layers, coefs.unbind(0), strict=True):
            grads = [p.grad for p in layer.params if p.grad is not None]
            if grads:
                torch._foreach_mul_(grads, coef.to(grads[0].dtype))
        after = torch.linalg.vector_norm(norms * coefs)
        metrics = {
            "clip/threshold": torch.full_like(after, self.max_norm),
            "clip/scale": after / (stats.total_norm + 1e-12),
            "clip/layers_clipped": (coefs < 1).sum(),
        }
        return Clipped(after, metrics)
