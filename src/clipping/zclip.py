"""ZClip (Kumar, Owen, Roy Chowdhury & Güra 2025, "ZClip: Adaptive Spike Mitigation for LLM Pre-Training").

An exponential moving average of the mean μ and variance σ² of the global gradient norm g. After
``warmup_steps`` steps (μ, σ² initialised from their plain mean and population variance), a step is a spike
when z = (g − μ)/(σ + ε) > z_thresh; it is then clipped to μ + z_thresh²·σ/z ("adaptive_scaling", the
default: the larger the spike, the closer to μ), or to μ ("mean"). The EMA is updated with the clipped norm:
μ <- αμ + (1−α)g', σ² <- ασ² + (1−α)(g' − μ)² with the updated μ, as the reference code does. Defaults from the
authors' code: α = 0.97, z_thresh = 2.5, warmup 25 steps, ε = 1e-6; ``max_grad_norm`` (None = off) also caps
every step, warm-up included. All state is in buffers (checkpointed); no host sync.
"""

from __future__ import annotations

import math

import torch

from src.clipping.base import Clipped, ClipRule, scale_to
from src.grad_norms import GradStats


class ZClip(ClipRule):
    """Clip z-score spikes of the global gradient norm against its EMA mean and variance.

    Args:
        alpha: EMA decay of the mean and variance.
        z_thresh: z-score above which a step is a spike.
        warmup_steps: steps whose plain mean and variance initialise the EMA (no z-score clipping before).
        eps: added to the standard deviation.
        clip_option: ``adaptive_scaling`` (clip to μ + z_thresh²·σ/z) or ``mean`` (clip to μ).
        max_grad_norm: a hard cap on every step, warm-up included; None for none.

    Raises:
        ValueError: an unknown ``clip_option``.
    """

    def __init__(
        self,
        alpha: float = 0.97,
        z_thresh: float = 2.5,
        warmup_steps: int = 25,
        eps: float = 1e-6,
        clip_option: str = "adaptive_scaling",
        max_grad_norm: float | None = None,
    ) -> None:
        super().__init__()
        if clip_option not in ("adaptive_scaling", "mean"):
            raise ValueError(f"clip_option={clip_option} is not allowed; expected adaptive_scaling or mean")
        self.alpha, self.z_thresh, self.warmup_steps, self.eps = alpha, z_thresh, warmup_steps, eps
        self.clip_option, self.max_grad_norm = clip_option, max_grad_norm
        self.register_buffer("warmup", torch.zeros(warmup_steps))
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("var", torch.zeros(()))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self._count = 0
        self.register_load_state_dict_post_hook(lambda module, _: setattr(module, "_count", int(module.count)))

    def clip(self, stats: GradStats) -> Clipped:
        grads = stats.grads()
        g = stats.total_norm.to(self.mean.device)
        cap = math.inf if self.max_grad_norm is None else self.max_grad_norm
        if self._count < self.warmup_steps:
            self.warmup[self._count] = g
            threshold = torch.full_like(g, cap)
            coef = scale_to(grads, g, threshold)
            if self._count == self.warmup_steps - 1:
                self.mean.copy_(self.warmup.mean())
                self.var.copy_(self.warmup.var(unbiased=False))
        else:
            std = self.var.sqrt()
            z = (g - self.mean) / (std + self.eps)
            spike = z > self.z_thresh
            if self.clip_option == "adaptive_scaling":
                target = self.mean + self.z_thresh**2 * std / z.clamp_min(self.eps)
            else:
                target = self.mean
            threshold = torch.clamp(torch.where(spike, target, torch.full_like(g, math.inf)), max=cap)
            coef = scale_to(grads, g, threshold)
            clipped = torch.minimum(g, threshold)
            self.mean.mul_(self.alpha).add_((1 - self.alpha) * clipped)
            self.var.mul_(self.alpha).add_((1 - self.alpha) * (clipped - self.mean) ** 2)
        self._count += 1
        self.count.fill_(self._count)
        return Clipped(g * coef, {"clip/threshold": threshold, "clip/scale": coef, "clip/ema_mean": self.mean.clone()})
