"""Every number the telemetry callbacks log, against an independent computation."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch

from src.callbacks import (
    GradNormMonitor,
    HistogramMonitor,
    ThroughTimeMonitor,
    WeightMonitor,
)
from src.callbacks.unrolled_rnn import unrolled_forward
from src.models import RecurrentNet
from src.train import train
from tests.telemetry_helpers import GradientProbe, fit


@pytest.mark.parametrize(
    ("model", "clip", "accumulate"),
    [
        ("mlp", "null", 1),
        ("mlp", "0.05", 1),
        ("rnn", "0.05", 1),
        ("lstm", "null", 2),
        ("lstm", "0.05", 2),
    ],
)
def test_grad_norms_match_an_independent_computation(make_cfg, model, clip, accumulate):
    probe = GradientProbe()
    overrides = [f"model={model}", f"clip={clip}", f"trainer.accumulate_grad_batches={accumulate}"]
    overrides += ["trainer.max_steps=6", "trainer.log_every_n_steps=1"]
    logger, trainer, _ = fit(make_cfg, overrides, [probe, GradNormMonitor()])
    assert trainer.global_step == 6 and sorted(probe.pre) == list(range(6))  # one entry per optimizer step
    for step, expected in probe.pre.items():
        logged = logger.steps[step]
        assert logged["grad/norm_total_preclip"] == pytest.approx(expected["__total__"], rel=1e-5)
        assert logged["grad/norm_total_postclip"] == pytest.approx(probe.post[step], rel=1e-5)
        layer_keys = {k.removeprefix("grad/layer/") for k in logged if k.startswith("grad/layer/")}
        assert layer_keys == set(expected) - {"__total__"}
        for name in layer_keys:
            assert logged[f"grad/layer/{name}"] == pytest.approx(expected[name], rel=1e-5, abs=1e-8)
        matrix_keys = {k.removeprefix("grad/recurrent/") for k in logged if k.startswith("grad/recurrent/")}
        assert matrix_keys == set(probe.recurrent[step]) and (model == "mlp") == (not matrix_keys)
        for name in matrix_keys:
            assert logged[f"grad/recurrent/{name}"] == pytest.approx(probe.recurrent[step][name], rel=1e-5)
        if clip == "null":
            assert logged["grad/norm_total_postclip"] == pytest.approx(logged["grad/norm_total_preclip"], rel=1e-6)
            assert logged["grad/clipped_fraction"] == 0.0
        else:
            assert expected["__total__"] > 0.05  # so clipping must have acted
            assert logged["grad/norm_total_postclip"] == pytest.approx(0.05, rel=1e-4)
            assert logged["grad/clipped_fraction"] == 1.0


def test_max_and_fraction_since_last_log(make_cfg):
    probe = GradientProbe()
    overrides = ["model=mlp", "clip=0.5", "trainer.max_steps=9", "trainer.log_every_n_steps=4"]
    logger, _, _ = fit(make_cfg, overrides, [probe, GradNormMonitor()])
    # step 0, then Lightning's own logging steps, (s + 1) % 4 == 0 (step 8, the last, is not one of them)
    assert sorted(logger.series("grad/norm_total_preclip")) == [0, 3, 7]
    totals = {s: v["__total__"] for s, v in probe.pre.items()}
    assert logger.steps[3]["grad/norm_max_since_log"] == pytest.approx(max(totals[s] for s in range(1, 4)), rel=1e-5)
    expected_fraction = sum(totals[s] > 0.5 for s in range(4, 8)) / 4
    assert logger.steps[7]["grad/clipped_fraction"] == pytest.approx(expected_fraction)


def test_weight_norms_and_update_ratios(make_cfg):
    """Every step of three, each against its own snapshots: the copy kept between logging steps (on the CPU)
    holds the step's weights, never an earlier step's; its memory is reused, and released when the fit ends."""

    class Snapshot(L.Callback):
        def __init__(self):
            self.before, self.after, self.kept = {}, {}, []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.before[trainer.global_step] = {n: p.detach().clone() for n, p in pl_module.named_parameters()}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.after[trainer.global_step - 1] = {n: p.detach().clone() for n, p in pl_module.named_parameters()}
            self.kept.append([t.data_ptr() for t in monitor._kept])

    monitor = WeightMonitor(every_n_steps=1)
    snap = Snapshot()
    logger, _, module = fit(make_cfg, ["model=mlp", "trainer.max_steps=3"], [snap, monitor])
    assert sorted(logger.series("weight/layer/network.blocks.0.linear")) == [0, 1, 2]
    for step, logged in logger.steps.items():
        before, after = snap.before[step], snap.after[step]
        for i in range(len(module.network.blocks)):
            prefix = f"network.blocks.{i}.linear"
            w = torch.cat([after[f"{prefix}.weight"].flatten(), after[f"{prefix}.bias"].flatten()])
            w0 = torch.cat([before[f"{prefix}.weight"].flatten(), before[f"{prefix}.bias"].flatten()])
            assert logged[f"weight/layer/{prefix}"] == pytest.approx(w0.norm().item(), rel=1e-5)  # W_s, before
            ratio = ((w - w0).norm() / w0.norm()).item()
            assert logged[f"update_ratio/layer/{prefix}"] == pytest.approx(ratio, rel=1e-4)
    assert len(snap.kept[0]) == len(list(module.parameters())) and snap.kept[0] == snap.kept[1] == snap.kept[2]
    assert monitor._kept == []


def csv_metrics(run_dir: str) -> dict[int, dict[str, float]]:
    rows: dict[int, dict[str, float]] = {}
    with (Path(run_dir) / "csv" / "metrics.csv").open() as f:
        for row in csv.DictReader(f):
            values = {k: float(v) for k, v in row.items() if v not in ("", None)}
            rows.setdefault(int(values["step"]), {}).update(values)
    return rows


@pytest.mark.parametrize(("depth", "first"), [(5, 16.0), (20, 524288.0)])
def test_seed_worked_example_through_the_real_run(make_cfg, depth, first):
    cfg = make_cfg(
        "model=chain",
        f"model.depth={depth}",
        "data=scalar",
        "data.batch_size=1",  # the seed's single input x = 1 (with B samples the δ norm is w^(n-l)/√B)
        "optimizer=sgd",
        "optimizer.momentum=0",
        "optimizer.lr=1e-9",
        "clip=null",
        "callbacks=default",
        "callbacks.progress_bar=null",
        "trainer.max_steps=1",
        "trainer.log_every_n_steps=1",
    )
    train(cfg)
    logged = csv_metrics(cfg.paths.output_dir)[0]
    deltas = [logged[f"delta/layer/network.layers.{i}"] for i in range(depth)]
    grads = [logged[f"grad/layer/network.layers.{i}"] for i in range(depth)]
    assert deltas == [2.0 ** (depth - 1 - i) for i in range(depth)]  # 16, 8, 4, 2, 1 at depth 5
    assert deltas[0] == first
    assert grads == [first] * depth  # every weight gradient is w^(n-1) in a constant chain


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_unrolled_pass_equals_the_fused_module(cell):
    torch.manual_seed(0)
    kind, _, act = cell.partition("_")
    net = RecurrentNet(3, 2, cell=kind, nonlinearity=act or "tanh", hidden_size=8, num_layers=2)
    x = torch.randn(4, 11, 3)
    fused, fused_h = net.rnn(x)
    out, h_n, states = unrolled_forward(net.rnn, x)
    assert torch.allclose(out, fused, atol=1e-5)
    assert torch.allclose(h_n[0] if kind == "lstm" else h_n, fused_h[0] if kind == "lstm" else fused_h, atol=1e-5)
    assert len(states) == 2 and len(states[0]) == 11


def through_time(make_cfg, *overrides):
    monitor = ThroughTimeMonitor(every_n_steps=1)
    base = ["model=rnn", "data.seq_len=40", "trainer.max_steps=1", "clip=null"]
    logger, _, _ = fit(make_cfg, base + list(overrides), [monitor])
    logged = logger.steps[0]
    profile = [logged[f"time_grad/t={t}"] for t in range(40)]
    return profile, logged


def test_tanh_rnn_profile_decays_and_relu_rnn_with_large_init_grows(make_cfg):
    # sigma_max(W_hh) = 0.9 < 1/gamma: ||dh_t/dh_k|| <= 0.9^(t-k) (Pascanu et al. 2013), 0.9^39 = 0.016
    decay, logged = through_time(
        make_cfg, "model.nonlinearity=tanh", "model.recurrent_init=orthogonal", "model.recurrent_gain=0.9"
    )
    assert decay[0] < 0.1 * decay[-1]  # the gradient reaching t=0 from the loss at T has decayed
    assert sum(decay[:10]) < sum(decay[10:20]) < sum(decay[20:30]) < sum(decay[30:])
    assert logged["time_grad/ratio_first_last"] == pytest.approx(decay[0] / decay[-1], rel=1e-4)
    assert logged["rnn/sigma_max/network.rnn.weight_hh_l0"] == pytest.approx(0.9, rel=1e-4)  # orthogonal x 0.9
    grow, logged = through_time(
        make_cfg, "model.nonlinearity=relu", "model.recurrent_init=identity", "model.recurrent_gain=1.3"
    )
    assert grow[0] > 100 * grow[-1]
    assert logged["rnn/sigma_max/network.rnn.weight_hh_l0"] == pytest.approx(1.3, rel=1e-4)


def test_histograms_count_nonfinite_values(make_cfg):
    class Poison(L.Callback):  # a NaN and an inf in the first layer's gradient at step 0
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            if trainer.global_step == 0:
                grad = pl_module.network.blocks[0].linear.weight.grad
                grad.view(-1)[0], grad.view(-1)[1] = float("nan"), float("inf")

    overrides = ["model=mlp", "trainer.max_steps=2", "clip=null"]
    logger, _, _ = fit(make_cfg, overrides, [Poison(), HistogramMonitor(every_n_steps=1)])
    assert logger.steps[0]["grad/nonfinite/network.blocks.0.linear"] == 2
    assert logger.steps[0]["grad/nonfinite/network.blocks.1.linear"] == 0
    assert logger.steps[0]["weight/nonfinite/network.blocks.0.linear"] == 0
    # Adam is elementwise: exactly those two weights became NaN in the update, and are counted, not dropped
    assert logger.steps[1]["weight/nonfinite/network.blocks.0.linear"] == 2
