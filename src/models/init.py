"""Weight initialisation schemes, one name each, applied to every weight matrix of a network.

- normal(std): N(0, std²), the seed article's N(0, 1) "large initialisation" at std = 1.
- xavier: Glorot & Bengio (2010), normal with std = gain·sqrt(2 / (fan_in + fan_out)).
- he: He et al. (2015), normal with std = gain / sqrt(fan_in), gain sqrt(2) for relu.
- orthogonal: Saxe, McClelland & Ganguli (2014), a (semi-)orthogonal matrix times gain.
- identity: Le, Jaitly & Hinton (2015) IRNN, the identity times gain (meant for recurrent weights).
- constant(value): every weight equal (the seed's scalar chain with w = 2.0).
- default: PyTorch's own initialisation, left untouched.
Biases start at zero for every scheme but `default`.
"""

from __future__ import annotations

import math
from enum import Enum

import torch
from torch import Tensor, nn


class Init(str, Enum):
    default = "default"
    normal = "normal"
    xavier = "xavier"
    he = "he"
    orthogonal = "orthogonal"
    identity = "identity"
    constant = "constant"


def activation_gain(activation: str, negative_slope: float = 0.01) -> float:
    """The gain that keeps activations' variance through a layer (torch's calculate_gain table)."""
    if activation in ("relu", "leaky_relu"):
        return nn.init.calculate_gain(activation, negative_slope)
    if activation in ("tanh", "sigmoid"):
        return nn.init.calculate_gain(activation)
    if activation in ("elu", "silu", "swish"):
        return math.sqrt(2.0)  # unbounded above like relu; the usual practical choice
    return 1.0


@torch.no_grad()
def init_matrix(weight: Tensor, scheme: str, *, std: float = 1.0, gain: float = 1.0, value: float = 1.0) -> None:
    """Initialise one weight matrix in place (2-D: (fan_out, fan_in), as nn.Linear and nn.RNN store them)."""
    scheme = Init(scheme)
    fan_out, fan_in = weight.shape[0], weight[0].numel()
    if scheme is Init.default:
        return
    if scheme is Init.normal:
        weight.normal_(0.0, std)
    elif scheme is Init.xavier:
        weight.normal_(0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))
    elif scheme is Init.he:
        weight.normal_(0.0, gain / math.sqrt(fan_in))
    elif scheme is Init.orthogonal:
        nn.init.orthogonal_(weight, gain=gain)
    elif scheme is Init.identity:
        nn.init.eye_(weight.view(fan_out, fan_in)).mul_(gain)
    elif scheme is Init.constant:
        weight.fill_(value)


@torch.no_grad()
def init_linear(layer: nn.Linear, scheme: str, **params: float) -> None:
    init_matrix(layer.weight, scheme, **params)
    if layer.bias is not None and Init(scheme) is not Init.default:
        layer.bias.zero_()
