"""Deep MLP, plain or ResNet-style, with optional BatchNorm/LayerNorm.

``depth`` hidden blocks, each Linear -> [norm] -> activation, then a Linear head. With ``residual`` every
block whose input and output widths match adds its input back (h <- h + block(h)), the skip connection of
He et al. (2016) that keeps the backward signal from being a pure product of Jacobians. Sequence inputs
(B, T, C) are flattened to (B, T·C): a feed-forward net sees the whole sequence at once.
"""

from __future__ import annotations

from enum import Enum

from torch import Tensor, nn

from src.models.init import default_gain, init_linear


class Activation(str, Enum):
    relu = "relu"
    leaky_relu = "leaky_relu"
    elu = "elu"
    silu = "silu"
    swish = "swish"  # = silu (Ramachandran et al. 2017 named it swish)
    tanh = "tanh"
    sigmoid = "sigmoid"
    identity = "identity"


class Norm(str, Enum):
    none = "none"
    batchnorm = "batchnorm"
    layernorm = "layernorm"


def make_activation(name: str, negative_slope: float = 0.01) -> nn.Module:
    name = Activation(name).value
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    return {
        "relu": nn.ReLU,
        "elu": nn.ELU,
        "silu": nn.SiLU,
        "swish": nn.SiLU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "identity": nn.Identity,
    }[name]()


def make_norm(name: str, width: int) -> nn.Module | None:
    name = Norm(name).value
    return {"none": None, "batchnorm": nn.BatchNorm1d(width), "layernorm": nn.LayerNorm(width)}[name]


class Block(nn.Module):
    def __init__(self, fan_in: int, width: int, activation: str, negative_slope: float, norm: str) -> None:
        super().__init__()
        self.linear = nn.Linear(fan_in, width)
        self.norm = make_norm(norm, width)
        self.act = make_activation(activation, negative_slope)

    def forward(self, h: Tensor) -> Tensor:
        z = self.linear(h)
        if self.norm is not None:
            z = self.norm(z)
        return self.act(z)


class MLP(nn.Module):
    sequence_model = False  # consumes flattened inputs

    def __init__(
        self,
        input_size: int,
        output_size: int,
        depth: int = 8,
        width: int = 64,
        activation: str = "relu",
        negative_slope: float = 0.01,
        norm: str = "none",
        residual: bool = False,
        init: str = "he",
        init_std: float = 1.0,
        init_gain: float | None = None,
        init_value: float = 1.0,
        head_init: str = "default",
    ) -> None:
        super().__init__()
        self.residual = residual
        self.blocks = nn.ModuleList(
            Block(input_size if i == 0 else width, width, activation, negative_slope, norm) for i in range(depth)
        )
        self.head = nn.Linear(width, output_size)
        gain = default_gain(init, activation, negative_slope) if init_gain is None else init_gain
        for i, block in enumerate(self.blocks):
            # the first layer's input passed no nonlinearity: unit gain keeps its second moment (He et al. 2015 §2.2)
            first = 1.0 if init_gain is None else init_gain
            init_linear(block.linear, init, std=init_std, gain=first if i == 0 else gain, value=init_value)
        # the head feeds a loss, not an activation: its own scheme (torch's nn.Linear default unless set), gain 1
        init_linear(self.head, head_init, std=init_std, gain=1.0, value=init_value)

    def forward(self, x: Tensor) -> Tensor:
        h = x.flatten(1)  # (B, T·C) or (B, C)
        for block in self.blocks:
            out = block(h)
            h = h + out if self.residual and out.shape == h.shape else out
        return self.head(h)
