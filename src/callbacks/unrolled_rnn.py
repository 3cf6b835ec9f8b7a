"""An unrolled forward pass of torch's fused nn.RNN / nn.LSTM / nn.GRU over the same weights.

cuDNN's fused kernels keep the per-step hidden states inside one kernel, so dL/dh_t through time cannot be
read from them. This loop implements the equations of the torch.nn.RNN/LSTM/GRU documentation step by step
and returns every layer's h_t as separate tensors of the autograd graph; its output equals the fused
module's to float tolerance. It is slow (T small kernels per layer): diagnostics only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _gates(rnn: nn.RNNBase, layer: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"weight_hh_l{layer}")
    b_ih = getattr(rnn, f"bias_ih_l{layer}", None) if rnn.bias else None
    b_hh = getattr(rnn, f"bias_hh_l{layer}", None) if rnn.bias else None
    return w_ih, w_hh, b_ih, b_hh


def check_unrollable(rnn: nn.RNNBase) -> None:
    if rnn.bidirectional or getattr(rnn, "proj_size", 0):
        raise ValueError("the unrolled pass covers unidirectional modules without projections only")


def unrolled_forward(
    rnn: nn.RNNBase, x: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None = None
) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor], list[list[Tensor]]]:
    """(output, h_n or (h_n, c_n), states) where states[layer][t] is h_t of that layer, shape (B, H)."""
    check_unrollable(rnn)
    if rnn.batch_first:
        x = x.transpose(0, 1)  # (T, B, C)
    steps, batch, hidden = x.shape[0], x.shape[1], rnn.hidden_size
    lstm = rnn.mode == "LSTM"
    if hx is None:
        zeros = x.new_zeros(rnn.num_layers, batch, hidden)
        hx = (zeros, zeros.clone()) if lstm else zeros
    h0, c0 = hx if lstm else (hx, None)
    states: list[list[Tensor]] = []
    h_last, c_last = [], []
    layer_in = x
    for layer in range(rnn.num_layers):
        w_ih, w_hh, b_ih, b_hh = _gates(rnn, layer)
        gi_all = torch.nn.functional.linear(layer_in, w_ih, b_ih)  # (T, B, G·H), input part for all steps
        h = h0[layer]
        c = c0[layer] if c0 is not None else None
        hs: list[Tensor] = []
        for t in range(steps):
            gi, gh = gi_all[t], torch.nn.functional.linear(h, w_hh, b_hh)
            if rnn.mode == "RNN_TANH":
                h = torch.tanh(gi + gh)
            elif rnn.mode == "RNN_RELU":
                h = torch.relu(gi + gh)
            elif lstm:
                i, f, g, o = (gi + gh).chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:  # GRU: the reset gate multiplies the recurrent part of the candidate only
                r_i, z_i, n_i = gi.chunk(3, dim=1)
                r_h, z_h, n_h = gh.chunk(3, dim=1)
                r, z = torch.sigmoid(r_i + r_h), torch.sigmoid(z_i + z_h)
                h = (1 - z) * torch.tanh(n_i + r * n_h) + z * h
            hs.append(h)
        states.append(hs)
        h_last.append(h)
        if c is not None:
            c_last.append(c)
        layer_in = torch.stack(hs)  # (T, B, H); dropout between layers is a training-only regulariser
    output = layer_in.transpose(0, 1) if rnn.batch_first else layer_in
    h_n = torch.stack(h_last)
    return output, ((h_n, torch.stack(c_last)) if lstm else h_n), states
