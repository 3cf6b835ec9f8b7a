"""A small Transformer encoder of gradlab's own blocks (nanoGPT-sized), for the sequence tasks.

Pre-LN or Post-LN blocks (``norm_position``; Xiong et al. 2020), optional LayerNorm on each head's queries
and keys (``qk_norm``; Dehghani et al. 2023, Wortsman et al. 2023), causal or bidirectional attention on
``F.scaled_dot_product_attention``. Positions enter as fixed sinusoids added to the input projection
(Vaswani et al. 2017 §3.5): no parameters and any length, so one model runs every task's T. The head reads the
last position (``output="final"``: adding, temporal order, recall) or every position (``output="per_step"``:
copy), as RecurrentNet does. No dropout: the synthetic tasks draw fresh data every step.

Attention telemetry (src/callbacks/attention.py): SDPA never materialises the attention logits, so each
``SelfAttention`` has a flag ``record_attention``; while it is True, the forward pass also computes
QKᵀ/√d explicitly (no gradient, masked entries −inf) and leaves it in ``attention_logits``. The output is
always the SDPA one, so recording never changes training.
"""

from __future__ import annotations

import math
from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.models.init import init_linear


class NormPosition(str, Enum):
    pre = "pre"  # x + f(LN(x)), final LN before the head: GPT-2, Xiong et al.'s Pre-LN
    post = "post"  # LN(x + f(x)): Vaswani et al. 2017, Xiong et al.'s Post-LN

    def __str__(self) -> str:  # "post", not "NormPosition.post", where a config interpolates it into a name
        return self.value


def sinusoidal_positions(seq_len: int, width: int, device: torch.device) -> Tensor:
    """(T, width) with PE[t, 2i] = sin(t / 10000^(2i/width)), PE[t, 2i+1] = cos(...) (Vaswani et al. 2017)."""
    position = torch.arange(seq_len, device=device, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    frequency = torch.exp(torch.arange(0, width, 2, device=device) * (-math.log(10000.0) / width))  # (⌈C/2⌉,)
    pe = torch.zeros(seq_len, width, device=device)
    pe[:, 0::2] = torch.sin(position * frequency)
    pe[:, 1::2] = torch.cos(position * frequency[: width // 2])
    return pe


class SelfAttention(nn.Module):
    """Multi-head self-attention.

    Args:
        width: model width C (= heads · head_dim).
        heads: number of heads H.
        causal: position t attends to positions <= t only.
        qk_norm: LayerNorm over head_dim on queries and keys (one LayerNorm each, shared by the heads), so
            |logit| <= (max|γ_q|·√d + ‖β_q‖)(max|γ_k|·√d + ‖β_k‖)/√d whatever the weights (tests/test_transformer.py).

    Attributes:
        record_attention: when True, the next forward passes leave their logits in ``attention_logits``.
        attention_logits: (B, H, T, T) QKᵀ/√d of the last recorded pass (float32), −inf where the causal mask
            applies.
    """

    def __init__(self, width: int, heads: int, causal: bool = True, qk_norm: bool = False) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width={width} must be a multiple of heads={heads}")
        self.heads, self.head_dim, self.causal = heads, width // heads, causal
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else None
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else None
        self.record_attention = False
        self.attention_logits: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=-1)  # 3 x (B, T, C)
        q, k, v = (z.view(b, t, self.heads, self.head_dim).transpose(1, 2) for z in (q, k, v))  # (B, H, T, d)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.record_attention:  # in float32 even under autocast: the value, not its fp16 overflow
            with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
                logits = q.float() @ k.float().transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, T, T)
                if self.causal:
                    future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
                    logits = logits.masked_fill(future, float("-inf"))
                self.attention_logits = logits
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)  # (B, H, T, d)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))  # (B, T, C)


class FeedForward(nn.Module):
    """Linear(width -> hidden), GELU, Linear(hidden -> width).

    Args:
        width: model width C.
        hidden: hidden width (mlp_ratio · C).
    """

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, hidden)
        self.proj = nn.Linear(hidden, width)  # Xiong et al.'s W^(2,l): the matrix of their Fig. 3

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """One Transformer layer: attention and feed-forward sub-layers, each with a residual and a LayerNorm.

    Args:
        width, heads, causal, qk_norm: as ``SelfAttention``.
        mlp_ratio: feed-forward hidden width / width.
        norm_position: ``pre`` (x + f(LN(x))) or ``post`` (LN(x + f(x))).
    """

    def __init__(self, width: int, heads: int, mlp_ratio: int, norm_position: str, causal: bool, qk_norm: bool) -> None:
        super().__init__()
        self.pre = NormPosition(norm_position) is NormPosition.pre
        self.ln1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads, causal=causal, qk_norm=qk_norm)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = FeedForward(width, mlp_ratio * width)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, T, C)
        if self.pre:
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.mlp(x))


class Transformer(nn.Module):
    """Input projection + sinusoidal positions, ``depth`` blocks, [final LayerNorm,] linear head.

    Args:
        input_size, output_size: the task's features per step and outputs (set by src/train.py).
        output: ``final`` (head on the last position) or ``per_step`` (head on every position).
        depth, width, heads, mlp_ratio, norm_position, causal, qk_norm: as ``Block``.
        init: scheme of every Linear (src/models/init.py), gain 1; ``init_std`` for ``normal``. Xavier is the
            initialisation Xiong et al. (2020) analyse; ``init=normal init_std=0.02`` is GPT-2's / nanoGPT's.
            LayerNorms start at γ = 1, β = 0.
    """

    sequence_model = True

    def __init__(
        self,
        input_size: int,
        output_size: int,
        output: str = "final",
        depth: int = 2,
        width: int = 64,
        heads: int = 4,
        mlp_ratio: int = 4,
        norm_position: str = "pre",
        causal: bool = True,
        qk_norm: bool = False,
        init: str = "xavier",
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.output = output
        self.embed = nn.Linear(input_size, width)
        self.blocks = nn.ModuleList(
            Block(width, heads, mlp_ratio, norm_position, causal, qk_norm) for _ in range(depth)
        )
        # Post-LN's last block already ends in a LayerNorm; Pre-LN needs one before the head (Xiong et al. Fig. 1)
        self.ln_f = nn.LayerNorm(width) if NormPosition(norm_position) is NormPosition.pre else None
        self.head = nn.Linear(width, output_size)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                init_linear(module, init, std=init_std, gain=1.0)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x) + sinusoidal_positions(x.shape[1], self.embed.out_features, x.device)  # (B, T, C)
        for block in self.blocks:
            h = block(h)
        if self.ln_f is not None:
            h = self.ln_f(h)
        if self.output == "final":
            return self.head(h[:, -1])  # (B, out)
        return self.head(h)  # (B, T, out)
