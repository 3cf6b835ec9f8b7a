"""AutoClip (Seetharaman, Wichern, Pardo & Le Roux 2020, "AutoClip: Adaptive Gradient Clipping for Source
Separation Networks"): clip the global norm at the p-th percentile of every global norm seen so far, the
current one included (as in the authors' reference code). The paper's and the authors' examples use p = 10;
the pip package ``autoclip`` defaults to the 90th percentile over a 1000-step window and per-parameter
clipping — not the rule of the paper. The history lives in an on-device ring buffer of ``history`` steps
(NaN = empty), so the percentile costs no host sync; it is a buffer, so it is checkpointed.
"""

from __future__ import annotations

import torch

from src.clipping.base import Clipped, ClipRule, scale_to
from src.grad_norms import GradStats


class AutoClip(ClipRule):
    """Clip the global gradient norm at a percentile of the norms seen so far.

    Args:
        percentile: p in 0..100 (the paper's 10).
        history: steps kept in the ring buffer of past norms.

    Raises:
        ValueError: ``percentile`` outside 0..100.
    """

    def __init__(self, percentile: float = 10.0, history: int = 10000) -> None:
        super().__init__()
        if not 0 <= percentile <= 100:
            raise ValueError(f"percentile={percentile} is not allowed; expected a number in 0..100")
        self.percentile = percentile
        self.register_buffer("norms", torch.full((history,), float("nan")))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self._count = 0  # host mirror of `count`: the ring index without a device read
        self.register_load_state_dict_post_hook(lambda module, _: setattr(module, "_count", int(module.count)))

    def clip(self, stats: GradStats) -> Clipped:
        norm = stats.total_norm.to(self.norms.device)
        self.norms[self._count % self.norms.numel()] = norm
        self._count += 1
        self.count.fill_(self._count)
        threshold = torch.nanquantile(self.norms, self.percentile / 100.0)
        coef = scale_to(stats.grads(), norm, threshold)
        return Clipped(norm * coef, {"clip/threshold": threshold, "clip/scale": coef})
