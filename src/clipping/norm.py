"""Global-norm and value clipping as rules (Pascanu, Mikolov & Bengio 2013 Algorithm 1; Mikolov's element-wise
clipping). Lightning's own ``clip``/``clip_algorithm`` do the same through the Trainer; these exist so the
comparison experiments can run every rule through one code path, and for the unit tests of the definitions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from src.clipping.base import ClipRule, grads_of, scale_to, total_norm


class GlobalNormClip(ClipRule):
    def __init__(self, max_norm: float = 1.0) -> None:
        super().__init__()
        self.max_norm = max_norm

    def clip(self, module: nn.Module) -> dict[str, Tensor]:
        grads = grads_of(list(module.parameters()))
        norm = total_norm(grads)
        coef = scale_to(grads, norm, self.max_norm)
        return {"clip/threshold": torch.full_like(norm, self.max_norm), "clip/scale": coef}


class ValueClip(ClipRule):
    def __init__(self, clip_value: float = 1.0) -> None:
        super().__init__()
        self.clip_value = clip_value

    def clip(self, module: nn.Module) -> dict[str, Tensor]:
        grads = grads_of(list(module.parameters()))
        before = total_norm(grads)
        torch._foreach_clamp_min_(grads, -self.clip_value)
        torch._foreach_clamp_max_(grads, self.clip_value)
        after = total_norm(grads)
        return {"clip/threshold": torch.full_like(before, self.clip_value), "clip/scale": after / (before + 1e-12)}
