"""Weight initialisation schemes, one name each, applied to every weight matrix of a network.

- normal(std): N(0, std²), the seed article's N(0, 1) "large initialisation" at std = 1.
- xavier: Glorot & Bengio (2010), normal with std = gain·sqrt(2 / (fan_in + fan_out)), gain 1 unless set.
- he: He et al. (2015), normal with std = gain / sqrt(fan_in), gain the activation's variance-preserving one.
- orthogonal: Saxe, McClelland & Ganguli (2014), a (semi-)orthogonal matrix times gain.
- identity: Le, Jaitly & Hinton (2015) IRNN, the identity times gain (meant for recurrent weights).
- constant(value): every weight equal (the seed's scalar chain with w = 2.0).
- default: PyTorch's own initialisation, left untouched.
Biases start at zero for every scheme but `default`. Which gain a scheme takes when none is set is
``default_gain``; output layers (heads) are initialised on their own (the networks' ``head_init``).
"""

from __future__ import annotations

import math
from enum import Enum
from functools import cache

import numpy as np
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


_PHI = {
    "relu": lambda z, a: np.maximum(z, 0.0),
    "leaky_relu": lambda z, a: np.where(z > 0, z, a * z),
    "elu": lambda z, a: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
    "silu": lambda z, a: z / (1.0 + np.exp(-z)),
    "swish": lambda z, a: z / (1.0 + np.exp(-z)),
    "tanh": lambda z, a: np.tanh(z),
    "sigmoid": lambda z, a: 1.0 / (1.0 + np.exp(-z)),
    "identity": lambda z, a: z,
}


def second_moment(activation: str, q: float = 1.0, negative_slope: float = 0.01) -> float:
    """E[φ(z)²] for z ~ N(0, q), by 201-point Gauss–Hermite quadrature (exact to ~1e-10 for these φ)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(201)
    values = _PHI[activation](math.sqrt(q) * nodes, negative_slope)
    return float((weights * values**2).sum() / weights.sum())


@cache
def activation_gain(activation: str, negative_slope: float = 0.01) -> float:
    """The variance-preserving gain g = 1/sqrt(E[φ(z)²]), z ~ N(0, 1).

    Derivation (He et al. 2015 §2.2, for any φ): with zero-mean weights of variance g²/fan_in, a layer's
    pre-activation second moment is q' = g²·E[φ(z)²] for z ~ N(0, q); this g makes q = 1 a fixed point. relu
    gives √2 and leaky relu √(2/(1+a²)) exactly; tanh 1.593 and sigmoid 1.846 (torch's calculate_gain table
    says 5/3 and 1, which are not variance-preserving); silu 1.677, elu 1.245. For silu the fixed point is
    unstable (``fixed_point_slope`` 1.17 > 1): finite-width fluctuations grow layer by layer, so no gain keeps
    a deep plain silu stack at unit variance (measured in tests/test_models.py).
    """
    return 1.0 / math.sqrt(second_moment(activation, 1.0, negative_slope))


def fixed_point_slope(activation: str, negative_slope: float = 0.01) -> float:
    """d q'/d q at q = 1 with the variance-preserving gain: < 1 stable, 1 neutral (relu), > 1 unstable."""
    eps = 1e-4
    gain_sq = activation_gain(activation, negative_slope) ** 2
    hi, lo = second_moment(activation, 1 + eps, negative_slope), second_moment(activation, 1 - eps, negative_slope)
    return gain_sq * (hi - lo) / (2 * eps)


def default_gain(scheme: str, activation: str, negative_slope: float = 0.01) -> float:
    """The gain a scheme uses when ``init_gain`` is not set.

    he and orthogonal take the activation's variance-preserving gain (that is what He et al. derive; Saxe et
    al. scale orthogonal matrices the same way); xavier is Glorot & Bengio's std with gain 1 (their derivation
    assumes units linear around 0); identity stays an isometry; normal and constant ignore the gain.
    """
    if Init(scheme) in (Init.he, Init.orthogonal):
        return activation_gain(activation, negative_slope)
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
