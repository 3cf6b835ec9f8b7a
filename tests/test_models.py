"""Networks and initialisation schemes: the seed's worked example exactly, and each init's statistics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from src.models import MLP, RecurrentNet, ScalarChain
from src.models.init import init_matrix


def chain_signals(depth: int, w: float, x: float = 1.0):
    net = ScalarChain(depth=depth, init_value=w)
    acts = []
    h = torch.tensor([[x]])
    for layer in net.layers:
        h = layer(h)
        h.retain_grad()
        acts.append(h)
    h.sum().backward()  # loss = output: ∂L/∂a_n = 1, the seed's δ₅ = 1.0
    deltas = [a.grad.item() for a in acts]
    grads = [layer.weight.grad.item() for layer in net.layers]
    return h.item(), deltas, grads


def test_chain_matches_the_seed_worked_example():
    out, deltas, grads = chain_signals(5, 2.0)
    assert out == 32.0
    assert deltas == [16.0, 8.0, 4.0, 2.0, 1.0]  # δ_l = ∂L/∂a_l, first layer to last
    assert grads == [16.0] * 5  # every weight gradient is w^(n-1)·x in a constant chain
    # one SGD step at lr 0.1 moves W1 by 1.6, 80% of its initial 2.0
    assert 0.1 * grads[0] == pytest.approx(1.6) and 0.1 * grads[0] / 2.0 == pytest.approx(0.8)


def test_chain_depth_20_and_the_vanishing_mirror():
    _, deltas, grads = chain_signals(20, 2.0)
    assert deltas[0] == grads[0] == 2**19 == 524288
    _, deltas, _ = chain_signals(5, 0.5)
    assert deltas == [0.0625, 0.125, 0.25, 0.5, 1.0]
    _, deltas, _ = chain_signals(5, 1.0)
    assert deltas == [1.0] * 5


@pytest.mark.parametrize(
    ("scheme", "expected_std"),
    [
        ("normal", 1.0),
        ("xavier", math.sqrt(2.0 / (512 + 256))),
        ("he", math.sqrt(2.0) / math.sqrt(256)),
    ],
)
def test_init_std(scheme: str, expected_std: float):
    torch.manual_seed(0)
    w = torch.empty(512, 256)
    gain = math.sqrt(2.0) if scheme == "he" else 1.0
    init_matrix(w, scheme, std=1.0, gain=gain)
    assert w.mean().item() == pytest.approx(0.0, abs=0.01 * expected_std + 1e-3)
    assert w.std().item() == pytest.approx(expected_std, rel=0.02)


def test_orthogonal_identity_constant():
    w = torch.empty(64, 64)
    init_matrix(w, "orthogonal", gain=1.5)
    assert torch.allclose(w @ w.T, 1.5**2 * torch.eye(64), atol=1e-4)
    init_matrix(w, "identity", gain=1.0)
    assert torch.equal(w, torch.eye(64))
    init_matrix(w, "constant", value=2.0)
    assert (w == 2.0).all()


def test_mlp_init_and_shapes():
    torch.manual_seed(0)
    net = MLP(input_size=40, output_size=1, depth=3, width=256, activation="tanh", init="normal", init_std=1.0)
    assert net(torch.randn(5, 20, 2)).shape == (5, 1)  # sequences are flattened
    w = net.blocks[1].linear.weight
    assert w.std().item() == pytest.approx(1.0, rel=0.02)
    assert net.blocks[1].linear.bias.abs().sum() == 0
    res = MLP(input_size=8, output_size=2, depth=4, width=8, norm="layernorm", residual=True)
    assert isinstance(res.blocks[2].norm, nn.LayerNorm)


def test_recurrent_init_and_forget_bias():
    lstm = RecurrentNet(2, 1, cell="lstm", hidden_size=16, num_layers=2, forget_bias=1.0)
    for layer in range(2):
        bias = getattr(lstm.rnn, f"bias_ih_l{layer}")
        assert (bias[16:32] == 1.0).all() and (bias[:16] == 0).all()
        w_hh = getattr(lstm.rnn, f"weight_hh_l{layer}")
        for gate in w_hh.split(16):  # each gate's recurrent matrix is orthogonal on its own
            assert torch.allclose(gate @ gate.T, torch.eye(16), atol=1e-4)
    irnn = RecurrentNet(2, 1, cell="rnn", nonlinearity="relu", recurrent_init="identity", init_gain=1.0)
    assert torch.equal(irnn.rnn.weight_hh_l0, torch.eye(64))
    per_step = RecurrentNet(10, 9, cell="gru", output="per_step")
    assert per_step(torch.randn(3, 7, 10)).shape == (3, 7, 9)
