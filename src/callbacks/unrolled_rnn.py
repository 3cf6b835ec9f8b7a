"""An unrolled forward pass of torch's fused nn.RNN / nn.LSTM / nn.GRU over the same weights.

The fused kernels (cuDNN on GPU, one ATen op on CPU) keep the per-step hidden states inside one call, so
dL/dh_t through time cannot be read from them. This loop follows the equations of the torch.nn.RNN, LSTM
and GRU documentation one step at a time and keeps every layer's h_t as its own tensor of the autograd
graph; its output equals the fused module's to float tolerance. It is slow (T small kernels per layer):
for diagnostics on logging steps, never for training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HiddenState = Tensor | tuple[Tensor, Tensor]


def unroll_support(rnn: nn.RNNBase) -> str | None:
    """Why ``rnn`` cannot be unrolled here, or None when it can."""
    if rnn.bidirectional:
        return "bidirectional"
    if getattr(rnn, "proj_size", 0):
        return "LSTM with proj_size"
    if rnn.mode not in ("RNN_TANH", "RNN_RELU", "LSTM", "GRU"):
        return f"mode {rnn.mode}"
    return None


def _cell(rnn: nn.RNNBase, gi: Tensor, gh: Tensor, h: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """One time step from the input part ``gi`` and the recurrent part ``gh`` of the pre-activations."""
    if rnn.mode == "RNN_TANH":
        return (gi + gh).tanh(), None
    if rnn.mode == "RNN_RELU":
        return (gi + gh).relu(), None
    if rnn.mode == "LSTM":
        i, f, g, o = (gi + gh).chunk(4, dim=-1)  # torch's gate order
        assert c is not None
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        return o.sigmoid() * c.tanh(), c
    # GRU (Cho et al. 2014, torch's variant): the reset gate scales the recurrent part of the candidate only
    r_i, z_i, n_i = gi.chunk(3, dim=-1)
    r_h, z_h, n_h = gh.chunk(3, dim=-1)
    r, z = (r_i + r_h).sigmoid(), (z_i + z_h).sigmoid()
    return (1 - z) * (n_i + r * n_h).tanh() + z * h, None


def unrolled_forward(
    rnn: nn.RNNBase, x: Tensor, hx: HiddenState | None = None
) -> tuple[Tensor, HiddenState, list[list[Tensor]]]:
    """Same (output, h_n or (h_n, c_n)) as ``rnn(x, hx)``, plus ``states[layer][t]``: h_t, shape (B, H).

    Dropout between layers is applied as the fused module applies it (training mode, ``rnn.dropout``).
    """
    reason = unroll_support(rnn)
    if reason is not None:
        raise ValueError(f"cannot unroll a {reason} recurrent module")
    unbatched = x.dim() == 2
    if unbatched:  # (T, C) -> (T, 1, C)
        x = x.unsqueeze(1)
        if isinstance(hx, tuple):
            hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        elif hx is not None:
            hx = hx.unsqueeze(1)
    elif rnn.batch_first:
        x = x.transpose(0, 1)  # (T, B, C)
    steps, batch = x.shape[0], x.shape[1]
    lstm = rnn.mode == "LSTM"
    if hx is None:
        zeros = x.new_zeros(rnn.num_layers, batch, rnn.hidden_size)
        hx = (zeros, zeros) if lstm else zeros
    h0, c0 = hx if isinstance(hx, tuple) else (hx, None)
    states: list[list[Tensor]] = []
    h_n, c_n = [], []
    layer_in = x
    for layer in range(rnn.num_layers):
        w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"weight_hh_l{layer}")
        b_ih = getattr(rnn, f"bias_ih_l{layer}") if rnn.bias else None
        b_hh = getattr(rnn, f"bias_hh_l{layer}") if rnn.bias else None
        if layer > 0 and rnn.dropout > 0:
            layer_in = F.dropout(layer_in, rnn.dropout, rnn.training)
        gi_all = F.linear(layer_in, w_ih, b_ih)  # (T, B, G·H): the input part of every step at once
        h, c = h0[layer], (c0[layer] if c0 is not None else None)
        hs: list[Tensor] = []
        for t in range(steps):
            h, c = _cell(rnn, gi_all[t], F.linear(h, w_hh, b_hh), h, c)
            hs.append(h)
        states.append(hs)
        h_n.append(h)
        if c is not None:
            c_n.append(c)
        layer_in = torch.stack(hs)  # (T, B, H)
    output, last = layer_in, torch.stack(h_n)  # (T, B, H), (num_layers, B, H)
    hidden: HiddenState = (last, torch.stack(c_n)) if lstm else last
    if unbatched:
        output = output.squeeze(1)
        hidden = (hidden[0].squeeze(1), hidden[1].squeeze(1)) if isinstance(hidden, tuple) else hidden.squeeze(1)
    elif rnn.batch_first:
        output = output.transpose(0, 1)
    return output, hidden, states
