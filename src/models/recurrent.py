"""Vanilla RNN (tanh | relu), LSTM and GRU on torch's fused modules (cuDNN on GPU), with a linear head.

One string picks the cell, as in pytorch/examples word_language_model. The head reads the last step
(``output="final"``: adding, temporal order) or every step (``output="per_step"``: copy memory).
Input weights take ``init`` (gain ``init_gain``), the head ``head_init`` (torch's nn.Linear default unless set);
recurrent weights take ``recurrent_init`` times ``recurrent_gain`` (e.g. ``identity`` for the IRNN of Le, Jaitly &
Hinton 2015, ``orthogonal`` for Saxe et al. 2014; the gain is then σ_max(W_hh), which must exceed 1/γ for
gradients to explode: Pascanu et al. 2013). The LSTM forget-gate bias starts at ``forget_bias`` (1.0: Gers,
Schmidhuber & Cummins 2000; Jozefowicz, Zaremba & Sutskever 2015).
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import Tensor, nn

from src.models.init import default_gain, init_linear, init_matrix


class Cell(str, Enum):
    rnn = "rnn"
    lstm = "lstm"
    gru = "gru"


class RecurrentNet(nn.Module):
    sequence_model = True

    def __init__(
        self,
        input_size: int,
        output_size: int,
        cell: str = "lstm",
        nonlinearity: str = "tanh",
        hidden_size: int = 64,
        num_layers: int = 1,
        init: str = "xavier",
        recurrent_init: str = "orthogonal",
        init_std: float = 0.1,
        init_gain: float | None = None,
        recurrent_gain: float = 1.0,
        init_value: float = 1.0,
        forget_bias: float = 1.0,
        head_init: str = "default",
        output: str = "final",
    ) -> None:
        super().__init__()
        cell = Cell(cell).value
        self.output = output
        kwargs = dict(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, batch_first=True)
        if cell == "rnn":
            self.rnn: nn.RNNBase = nn.RNN(nonlinearity=nonlinearity, **kwargs)
        else:
            self.rnn = nn.LSTM(**kwargs) if cell == "lstm" else nn.GRU(**kwargs)
        self.head = nn.Linear(hidden_size, output_size)

        act = nonlinearity if cell == "rnn" else "tanh"
        gain = default_gain(init, act) if init_gain is None else init_gain
        # W_hh is applied T times: its gain is its own key (default 1, an isometry for orthogonal/identity), not
        # the activation's feed-forward gain — tanh's 1.59 would make sigma_max(W_hh) > 1/gamma at init
        with torch.no_grad():
            for name, param in self.rnn.named_parameters():
                if name.startswith("weight_hh"):
                    self._init_gates(param, recurrent_init, std=init_std, gain=recurrent_gain, value=init_value)
                elif name.startswith("weight_ih"):
                    self._init_gates(param, init, std=init_std, gain=gain, value=init_value)
                elif init != "default":
                    param.zero_()
            if cell == "lstm":
                hs = hidden_size  # gate order (input, forget, cell, output): torch.nn.LSTM docs
                for layer in range(num_layers):
                    getattr(self.rnn, f"bias_ih_l{layer}")[hs : 2 * hs].fill_(forget_bias)
        # the head has its own scheme: with the input weights' (e.g. the IRNN's N(0, 0.001²), meant for W_ih by
        # Le et al. 2015) almost no gradient would reach the recurrent layer at first
        init_linear(self.head, head_init, std=init_std, gain=1.0, value=init_value)

    def _init_gates(self, weight: Tensor, scheme: str, **params: float) -> None:
        # LSTM/GRU stack 4 or 3 gate matrices of shape (H, fan_in): initialise each as its own matrix
        hidden = self.rnn.hidden_size
        for gate in weight.split(hidden, dim=0):
            init_matrix(gate, scheme, **params)

    def forward(self, x: Tensor) -> Tensor:
        h, _ = self.rnn(x)  # (B, T, H)
        if self.output == "final":
            return self.head(h[:, -1])  # (B, out)
        return self.head(h)  # (B, T, out)
