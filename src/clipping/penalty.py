"""Gradient-norm penalty (the seed article's "gradient penalty"): L' = L + λ·||∇_θ L||².

It lives in the loss, not in clipping: the penalty's own gradient needs a double backward (``create_graph``),
so a training step costs roughly two to three backward passes — mark it clearly in any comparison of speed.
It discourages large gradients smoothly instead of cutting them; it does not bound a single step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GradNormPenalty(nn.Module):
    def __init__(self, weight: float = 0.01) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, loss: Tensor, params: list[nn.Parameter]) -> Tensor:
        """λ·||∇L||², differentiable (double backward)."""
        params = [p for p in params if p.requires_grad]
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        squares = [g.pow(2).sum() for g in grads if g is not None]
        return self.weight * torch.stack(squares).sum()
