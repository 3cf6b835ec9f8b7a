"""Networks and initialisation schemes: the seed's worked example exactly, and each init's statistics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from src.models import MLP, RecurrentNet, ScalarChain
from src.models.init import activation_gain, fixed_point_slope, init_matrix


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


def test_xavier_is_glorot_with_unit_gain_whatever_the_activation():
    # Glorot & Bengio (2010): std = sqrt(2 / (fan_in + fan_out)); no activation gain unless init_gain is set
    torch.manual_seed(0)
    for activation in ("relu", "tanh", "silu"):
        net = MLP(input_size=300, output_size=1, depth=3, width=500, activation=activation, init="xavier")
        assert net.blocks[0].linear.weight.std().item() == pytest.approx(math.sqrt(2 / (300 + 500)), rel=0.01)
        assert net.blocks[1].linear.weight.std().item() == pytest.approx(math.sqrt(2 / (500 + 500)), rel=0.01)
    rnn = RecurrentNet(2, 1, cell="rnn", nonlinearity="tanh", hidden_size=1000, init="xavier")
    assert rnn.rnn.weight_ih_l0.std().item() == pytest.approx(math.sqrt(2 / (2 + 1000)), rel=0.06)  # 2000 samples


def test_variance_preserving_gains_are_computed():
    # g = 1/sqrt(E[φ(z)²]), z ~ N(0, 1): exact values where a closed form exists, a Monte Carlo check elsewhere
    assert activation_gain("relu") == pytest.approx(math.sqrt(2), rel=1e-9)
    assert activation_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / (1 + 0.2**2)), rel=1e-9)
    assert activation_gain("identity") == pytest.approx(1.0, rel=1e-9)
    z = torch.randn(4_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for activation, phi in (("silu", F.silu), ("elu", F.elu), ("tanh", torch.tanh), ("sigmoid", torch.sigmoid)):
        assert activation_gain(activation) == pytest.approx(phi(z).square().mean().rsqrt().item(), rel=2e-3)
    assert activation_gain("silu") == pytest.approx(1.6765, abs=1e-4)  # not sqrt(2): E[silu(z)²] = 0.3558


def _preactivation_variances(activation: str, seed: int = 0) -> list[float]:
    torch.manual_seed(seed)
    net = MLP(input_size=1024, output_size=1, depth=50, width=1024, activation=activation, init="he")
    h, out = torch.randn(64, 1024), []
    with torch.no_grad():
        for block in net.blocks:
            z = block.linear(h)
            out.append(z.var().item())
            h = block.act(z)
    return out


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "tanh", "sigmoid", "identity"])
def test_he_gain_keeps_the_forward_variance_through_50_layers(activation: str):
    # the input has variance 1; every layer's pre-activation variance stays within 2x of it (width 1024: the
    # finite-width random walk of relu's log-variance is ~0.2 per sqrt(layer) there)
    variances = _preactivation_variances(activation)
    assert all(0.5 <= v <= 2.0 for v in variances), (min(variances), max(variances))


def test_silu_has_no_stable_variance_preserving_gain():
    # Measured, against the expectation that a gain of ~1.68 would hold silu: q = 1 is a fixed point of the
    # variance map q -> g²·E[silu(√q z)²], but an unstable one (slope 1.17 > 1), so finite-width fluctuations
    # grow layer by layer; tanh's is stable (0.46), relu's neutral (1).
    assert fixed_point_slope("silu") == pytest.approx(1.1726, abs=1e-3)
    assert fixed_point_slope("tanh") < 1 and fixed_point_slope("relu") == pytest.approx(1.0, abs=1e-6)
    variances = _preactivation_variances("silu")
    assert 0.5 <= variances[0] <= 2.0 and variances[-1] > 100  # held at first, then leaves it for good


def test_heads_have_their_own_init():
    # the IRNN preset's N(0, 0.001²) is for W_ih (Le et al. 2015); the head keeps torch's nn.Linear default,
    # U(±1/sqrt(fan_in)), std 1/sqrt(3·fan_in)
    torch.manual_seed(0)
    irnn = RecurrentNet(2, 1, cell="rnn", nonlinearity="relu", hidden_size=1000, init="normal", init_std=0.001)
    assert irnn.rnn.weight_ih_l0.std().item() == pytest.approx(0.001, rel=0.05)
    assert irnn.head.weight.std().item() == pytest.approx(1 / math.sqrt(3 * 1000), rel=0.1)
    deep = MLP(input_size=8, output_size=500, depth=2, width=1000, init="normal", init_std=1.0)
    assert deep.head.weight.std().item() == pytest.approx(1 / math.sqrt(3 * 1000), rel=0.05)
    set_head = MLP(input_size=8, output_size=500, depth=2, width=1000, head_init="xavier")
    assert set_head.head.weight.std().item() == pytest.approx(math.sqrt(2 / 1500), rel=0.02)


def test_recurrent_gain_sets_sigma_max_of_w_hh():
    net = RecurrentNet(2, 1, cell="rnn", hidden_size=32, recurrent_init="orthogonal", recurrent_gain=1.5)
    assert torch.linalg.matrix_norm(net.rnn.weight_hh_l0, ord=2).item() == pytest.approx(1.5, rel=1e-4)
