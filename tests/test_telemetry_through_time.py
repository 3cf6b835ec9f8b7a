"""ThroughTimeMonitor and the unrolled pass, against fused-kernel references and closed-form profiles."""

from __future__ import annotations

import contextlib
import csv
import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from src.callbacks import ThroughTimeMonitor
from src.callbacks.through_time import sigma_max
from src.callbacks.unrolled_rnn import unrolled_forward
from src.train import train
from tests.telemetry_helpers import MemoryLogger

CELLS = {
    "rnn_tanh": lambda **kw: nn.RNN(nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: nn.RNN(nonlinearity="relu", **kw),
    "lstm": lambda **kw: nn.LSTM(**kw),
    "gru": lambda **kw: nn.GRU(**kw),
}
STEPS, BATCH, HIDDEN = 12, 4, 8
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@contextlib.contextmanager
def fp32_kernels(device: str) -> Iterator[None]:
    """cuDNN's RNN kernels may use TF32 (10-bit mantissa) by default on Ampere and later: compared at float32
    tolerance, they and the cuBLAS matmuls of the unrolled pass run in true fp32 here (the other flags kept)."""
    if device != "cuda":
        yield
        return
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=None, benchmark=None, deterministic=None, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32


def has_cudnn_rnn(output: Tensor) -> bool:
    """Whether the autograd graph behind ``output`` holds cuDNN's fused RNN (CudnnRnnBackward0)."""
    seen, todo = set(), [output.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if type(node).__name__.startswith("CudnnRnnBackward"):
            return True
        todo += [next_node for next_node, _ in node.next_functions]
    return False


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # default_root_dir (through_time.csv without a file logger) is the cwd


class SeqRegressor(L.LightningModule):
    """A recurrent module read at its last step by a linear head (BatchNorm in between), MSE loss."""

    def __init__(self, cell: str = "rnn_tanh", num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.rnn = CELLS[cell](
            input_size=3, hidden_size=HIDDEN, num_layers=num_layers, batch_first=True, dropout=dropout
        )
        self.head = nn.Sequential(nn.BatchNorm1d(HIDDEN), nn.Linear(HIDDEN, 1))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        out, _ = self.rnn(x)  # (B, T, H)
        loss = nn.functional.mse_loss(self.head(out[:, -1]), y)
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def loader(positive: bool = False, steps: int = STEPS) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, steps, 3, generator=g) if positive else torch.randn(32, steps, 3, generator=g)
    return DataLoader(TensorDataset(x, x.sum((1, 2)).unsqueeze(1).tanh()), batch_size=BATCH)


def fit(module: L.LightningModule, callbacks: list, data: DataLoader | None = None, **kwargs) -> MemoryLogger:
    logger = MemoryLogger()
    loggers = [*kwargs.pop("loggers", []), logger]
    trainer = L.Trainer(
        accelerator=kwargs.pop("accelerator", "cpu"),
        max_steps=kwargs.pop("max_steps", 1),
        log_every_n_steps=1,
        logger=loggers,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )
    trainer.fit(module, data or loader())
    return logger


def profile(logged: dict[str, float], steps: int = STEPS) -> list[float]:
    return [logged[f"time_grad/t={t}"] for t in range(steps)]


def fused_reference(module: SeqRegressor, x: Tensor, y: Tensor) -> list[float]:
    """||dL/dh_t|| with the fused kernel only: restart the module at step t+1 from (h_t, c_t) made a leaf."""
    rnn, norms = module.rnn, []
    for t in range(x.shape[1]):
        _, state = rnn(x[:, : t + 1])  # the state after step t
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        h_t = (state[0] if isinstance(state, tuple) else state).requires_grad_()
        hx = (h_t, state[1]) if isinstance(state, tuple) else h_t
        last = rnn(x[:, t + 1 :], hx)[0][:, -1] if t + 1 < x.shape[1] else h_t[-1]
        loss = nn.functional.mse_loss(module.head(last), y)
        norms.append(torch.autograd.grad(loss, h_t)[0].norm().item())
    return norms


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
def test_profile_equals_a_fused_kernel_reference(cell, device):
    class Reference(L.Callback):  # same weights, same batch, same train-mode BatchNorm
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.batch = batch

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            with torch.random.fork_rng():
                state = [b.clone() for b in pl_module.buffers()]
                self.norms = fused_reference(pl_module, *self.batch)
                for b, s in zip(pl_module.buffers(), state, strict=True):
                    b.copy_(s)

    ref = Reference()
    accelerator = "gpu" if device == "cuda" else "cpu"
    with fp32_kernels(device):  # on CUDA the reference runs cuDNN's fused kernels
        logged = fit(SeqRegressor(cell), [ref, ThroughTimeMonitor(every_n_steps=1)], accelerator=accelerator).steps[0]
    assert profile(logged) == pytest.approx(ref.norms, rel=1e-4)
    assert logged["time_grad/ratio_first_last"] == pytest.approx(ref.norms[0] / ref.norms[-1], rel=1e-4)
    w_hh = dict(SeqRegressor(cell).rnn.named_parameters())["weight_hh_l0"]  # the step-0 weights
    assert logged["rnn/sigma_max/rnn.weight_hh_l0"] == pytest.approx(torch.linalg.svdvals(w_hh)[0].item(), rel=1e-5)


def test_relu_rnn_with_large_recurrent_init_grows_exactly_geometrically():
    # W_hh = 1.2·I, positive inputs and input weights: every pre-activation is > 0, so each step back
    # multiplies dL/dh by W_hhᵀ = 1.2·I and ||dL/dh_t|| = 1.2^(T-1-t)·||dL/dh_(T-1)|| exactly
    module = SeqRegressor("rnn_relu")
    with torch.no_grad():
        module.rnn.weight_hh_l0.copy_(1.2 * torch.eye(HIDDEN))
        module.rnn.weight_ih_l0.uniform_(0.1, 0.2)
        module.rnn.bias_ih_l0.fill_(0.1)
        module.rnn.bias_hh_l0.zero_()
    logged = fit(module, [ThroughTimeMonitor(every_n_steps=1)], loader(positive=True)).steps[0]
    grad = profile(logged)
    assert grad == pytest.approx([1.2 ** (STEPS - 1 - t) * grad[-1] for t in range(STEPS)], rel=1e-4)
    assert logged["time_grad/ratio_first_last"] == pytest.approx(1.2 ** (STEPS - 1), rel=1e-4)
    assert logged["rnn/sigma_max/rnn.weight_hh_l0"] == pytest.approx(1.2, rel=1e-6)


def test_tanh_rnn_below_the_pascanu_bound_decays_at_least_geometrically():
    # σ_max(W_hh) = 0.5 < 1/γ = 1 for tanh: ||dL/dh_t|| <= 0.5^(T-1-t)·||dL/dh_(T-1)|| (Pascanu et al. 2013)
    module = SeqRegressor("rnn_tanh")
    with torch.no_grad():
        nn.init.orthogonal_(module.rnn.weight_hh_l0, gain=0.5)
    logged = fit(module, [ThroughTimeMonitor(every_n_steps=1)]).steps[0]
    grad = profile(logged)
    assert all(grad[t] <= 0.5 ** (STEPS - 1 - t) * grad[-1] * (1 + 1e-5) for t in range(STEPS))
    assert all(a < b for a, b in itertools.pairwise(grad))  # decays towards t = 0
    assert logged["rnn/sigma_max/rnn.weight_hh_l0"] == pytest.approx(0.5, rel=1e-5)


def test_profiles_far_below_float32_squares_are_not_flushed_to_zero():
    # σ_max = 0.3 over 38 steps: ||dL/dh_0|| ends near 1e-22, entries of ~1e-23 whose squares (~1e-46)
    # are below even float32's denormals: accumulated in float32 the norm would read 0
    module = SeqRegressor("rnn_tanh")
    with torch.no_grad():
        nn.init.orthogonal_(module.rnn.weight_hh_l0, gain=0.3)
    logged = fit(module, [ThroughTimeMonitor(every_n_steps=1)], loader(steps=38)).steps[0]
    grad = profile(logged, steps=38)
    assert 0 < grad[0] < 1e-21
    assert all(0 < a < b for a, b in itertools.pairwise(grad))


def test_csv_has_every_layer_and_the_scalars_follow_the_stride(tmp_path: Path):
    monitor = ThroughTimeMonitor(every_n_steps=2, max_points=5)
    logger = fit(SeqRegressor("lstm", num_layers=2), [monitor], max_steps=3, loggers=[CSVLogger(tmp_path)])
    assert sorted(logger.series("time_grad/ratio_first_last")) == [0, 1]  # 0, then (s + 1) % 2 == 0
    for step in (0, 1):  # stride ceil(12 / 5) = 3, and always the last step
        keys = {k for k in logger.steps[step] if k.startswith("time_grad/t=")}
        assert keys == {f"time_grad/t={t}" for t in (0, 3, 6, 9, 11)}
    with (monitor.log_dir / "through_time.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * STEPS  # logging steps x layers x time steps
    for row in rows:
        if row["layer"] == "1" and (key := f"time_grad/t={row['t']}") in logger.steps[int(row["step"])]:
            assert float(row["grad_norm"]) == pytest.approx(logger.steps[int(row["step"])][key], rel=1e-6)
    assert {(r["module"], r["layer"]) for r in rows} == {("rnn", "0"), ("rnn", "1")}


def test_diagnostic_pass_leaves_training_untouched():
    # dropout between layers (RNG) and BatchNorm (buffers): the extra pass must not change the trajectory,
    # and autograd.grad w.r.t. the hidden states must not add to any parameter's .grad
    plain = SeqRegressor("gru", num_layers=2, dropout=0.5)
    watched = SeqRegressor("gru", num_layers=2, dropout=0.5)
    torch.manual_seed(0)
    fit(plain, [], max_steps=4)
    torch.manual_seed(0)
    fit(watched, [ThroughTimeMonitor(every_n_steps=1)], max_steps=4)
    for (name, a), b in zip(plain.state_dict().items(), watched.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_loss_fn_argument():
    # L = sum of the last outputs: dL/dh_(T-1) is a tensor of ones, its norm sqrt(B·H)
    def loss_fn(module: L.LightningModule, batch: tuple[Tensor, Tensor]) -> Tensor:
        return module.rnn(batch[0])[0][:, -1].sum()

    logged = fit(SeqRegressor("rnn_tanh"), [ThroughTimeMonitor(every_n_steps=1, loss_fn=loss_fn)]).steps[0]
    assert logged[f"time_grad/t={STEPS - 1}"] == pytest.approx(math.sqrt(BATCH * HIDDEN))


def test_bidirectional_modules_are_skipped_with_a_warning():
    module = SeqRegressor("lstm")
    module.rnn = nn.LSTM(3, HIDDEN // 2, batch_first=True, bidirectional=True)
    with pytest.warns(UserWarning, match="bidirectional"):
        logged = fit(module, [ThroughTimeMonitor(every_n_steps=1)]).steps[0]
    assert "rnn/sigma_max/rnn.weight_hh_l0" in logged and not any(k.startswith("time_grad/") for k in logged)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("batch_first", [True, False])
def test_unrolled_pass_equals_the_fused_module_forward_and_backward(cell, batch_first, device):
    torch.manual_seed(0)
    rnn = CELLS[cell](input_size=3, hidden_size=5, num_layers=2, batch_first=batch_first, bias=cell != "gru")
    rnn = rnn.to(device)
    x = (torch.randn(4, 7, 3) if batch_first else torch.randn(7, 4, 3)).to(device)
    h0 = torch.randn(2, 4, 5, device=device)
    hx = (h0, torch.randn(2, 4, 5, device=device)) if cell == "lstm" else h0
    with fp32_kernels(device):
        fused_out, fused_h = rnn(x, hx)
    assert has_cudnn_rnn(fused_out) is (device == "cuda")  # on CUDA the reference is cuDNN's fused kernel
    out, h_n, states = unrolled_forward(rnn, x, hx)
    torch.testing.assert_close(out, fused_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h_n, fused_h, rtol=1e-5, atol=1e-6)
    assert len(states) == 2 and all(len(layer) == 7 for layer in states)
    torch.testing.assert_close(states[1][-1], out[:, -1] if batch_first else out[-1])
    # the same weights: the gradients of every parameter agree too
    with fp32_kernels(device):
        fused_grads = torch.autograd.grad(fused_out.square().sum(), list(rnn.parameters()))
    grads = torch.autograd.grad(out.square().sum(), list(rnn.parameters()))
    for a, b in zip(grads, fused_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_unrolled_pass_on_unbatched_input():
    rnn = nn.LSTM(3, 5, num_layers=2)
    x = torch.randn(7, 3)  # (T, C)
    fused_out, (_fused_h, fused_c) = rnn(x)
    out, (_h, c), _ = unrolled_forward(rnn, x)
    torch.testing.assert_close(out, fused_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c, fused_c, rtol=1e-5, atol=1e-6)


def test_sigma_max_is_the_largest_singular_value_and_nan_for_non_finite_weights():
    w = torch.randn(7, 7, generator=torch.Generator().manual_seed(0))
    assert sigma_max(w).item() == pytest.approx(float(np.linalg.svd(w.numpy(), compute_uv=False)[0]), rel=1e-5)
    w[2, 3] = math.inf
    assert math.isnan(sigma_max(w).item())  # torch.linalg.matrix_norm raises on this matrix


@pytest.mark.slow
def test_a_run_that_goes_on_with_nan_weights_keeps_logging_through_time(make_cfg):
    """on_nonfinite=warn lets an unclipped run go on after its weights turn NaN (lr 0.5: the first NaN gradient
    comes within ~10 steps, far from the last logging step whatever the CPU's rounding)."""
    summary = train(
        make_cfg(
            "model=rnn",
            "clip=null",
            "seed=0",
            "optimizer.lr=0.5",
            "trainer.max_steps=300",
            "logger=csv",
            "test=false",
            "callbacks.divergence_guard.on_nonfinite=warn",
            "callbacks.through_time.every_n_steps=50",
            fast=False,
        )
    )
    assert summary["steps"] == 300 and not math.isfinite(summary["metrics"]["val/loss"])
    rows = list(csv.DictReader((Path(summary["run_dir"]) / "csv" / "metrics.csv").read_text().splitlines()))
    sigmas = [
        float(r["rnn/sigma_max/network.rnn.weight_hh_l0"])
        for r in rows
        if r.get("rnn/sigma_max/network.rnn.weight_hh_l0")
    ]
    assert len(sigmas) == 7 and sigmas[0] == pytest.approx(1.1, rel=1e-4) and math.isnan(sigmas[-1])
