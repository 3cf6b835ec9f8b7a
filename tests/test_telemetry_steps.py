"""The monitors on a plain LightningModule (no gradlab model): accumulation, AMP, custom clipping, activations.

Each logged number is checked against a second route: the same global batch in one piece, an fp32 run, a
hand-written forward pass with ``torch.autograd.grad``, or the gradients read back by another callback.
"""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from src.callbacks import ActivationMonitor, GradNormMonitor, WeightMonitor
from src.clipping import ClipReport, ReportsClipping
from src.grad_norms import grad_norms
from tests.telemetry_helpers import GradientProbe, MemoryLogger

N_SAMPLES, N_FEATURES = 64, 6


def dataset() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_SAMPLES, N_FEATURES, generator=g)
    return TensorDataset(x, x.sum(1, keepdim=True).sin())


class Regressor(L.LightningModule):
    """A 3-layer tanh MLP trained with MSE; any Lightning project's model, as far as the monitors know."""

    def __init__(self, clip_rule: float | None = None) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Linear(N_FEATURES, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
        self.clip_rule = clip_rule
        self.report: ClipReport | None = None

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        if self.clip_rule is None:
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        # a custom rule: clip to half the pre-clip norm, and say what it did (ReportsClipping, via clip_report)
        total = torch.nn.utils.clip_grad_norm_(self.parameters(), max_norm=float("inf"))
        threshold = total * self.clip_rule
        torch.nn.utils.clip_grads_with_norm_(self.parameters(), threshold, total)
        metrics = {"clip/threshold": threshold, "clip/scale": threshold / total}
        self.report = ClipReport(self.trainer.global_step, rewritten=True, postclip_norm=None, metrics=metrics)


class ReportingRegressor(Regressor):
    """The same model, implementing the ``ReportsClipping`` protocol."""

    def clip_report(self) -> ClipReport | None:
        return self.report


def fit(
    callbacks: list[L.Callback], batch_size: int, module: L.LightningModule | None = None, **trainer_kwargs
) -> tuple[MemoryLogger, L.LightningModule]:
    module = module or Regressor()
    logger = MemoryLogger()
    defaults = dict(max_steps=4, log_every_n_steps=1, enable_checkpointing=False, enable_progress_bar=False)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=logger,
        callbacks=callbacks,
        enable_model_summary=False,
        **{**defaults, **trainer_kwargs},
    )
    trainer.fit(module, DataLoader(dataset(), batch_size=batch_size))
    return logger, module


def monitors() -> list[L.Callback]:
    return [GradNormMonitor(), WeightMonitor(), ActivationMonitor()]


def test_accumulation_logs_the_same_numbers_as_one_batch_of_the_same_size():
    one, _ = fit(monitors(), batch_size=16, gradient_clip_val=0.3)
    two, _ = fit(monitors(), batch_size=8, accumulate_grad_batches=2, gradient_clip_val=0.3)
    assert sorted(one.steps) == sorted(two.steps) == [0, 1, 2, 3]  # micro-batches that did not step log nothing
    for step in range(4):
        a, b = one.steps[step], two.steps[step]
        assert set(a) == set(b)
        assert any(k.startswith("delta/") for k in a) and any(k.startswith("act/std/") for k in a)
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-7), key
        assert a["grad/norm_total_postclip"] == pytest.approx(min(0.3, a["grad/norm_total_preclip"]), rel=1e-5)
    assert any(one.steps[s]["grad/norm_total_preclip"] > 0.3 for s in range(4))  # clipping acted


def test_clip_by_value_and_the_clipped_fraction():
    probe, monitor = GradientProbe(), GradNormMonitor(every_n_steps=3)
    logger, _ = fit(
        [probe, monitor],
        8,
        max_steps=7,
        gradient_clip_val=0.02,
        gradient_clip_algorithm="value",
    )
    assert sorted(logger.steps) == [0, 2, 5]  # step 0, then (s + 1) % 3 == 0, as Lightning's own logging
    for step in (0, 2, 5):
        assert logger.steps[step]["grad/norm_total_postclip"] == pytest.approx(probe.post[step], rel=1e-5)
    clipped = {s: probe.post[s] < probe.pre[s]["__total__"] * (1 - 1e-6) for s in probe.pre}
    assert logger.steps[5]["grad/clipped_fraction"] == pytest.approx(sum(clipped[s] for s in (3, 4, 5)) / 3)
    assert logger.steps[5]["grad/norm_max_since_log"] == pytest.approx(
        max(probe.pre[s]["__total__"] for s in (3, 4, 5))
    )
    totals = monitor.run_totals()  # over the whole fit
    assert totals["optimizer_steps"] == 7 and totals["steps_clipped"] == sum(clipped.values())
    assert totals["max_grad_norm"] == pytest.approx(max(probe.pre[s]["__total__"] for s in range(7)))


def test_custom_clipping_rule_publishes_clip_stats():
    assert isinstance(ReportingRegressor(), ReportsClipping) and not isinstance(Regressor(), ReportsClipping)
    probe = GradientProbe()
    logger, _ = fit([probe, GradNormMonitor()], 8, module=ReportingRegressor(clip_rule=0.5), gradient_clip_val=None)
    for step, logged in logger.steps.items():
        pre = probe.pre[step]["__total__"]
        assert logged["clip/threshold"] == pytest.approx(0.5 * pre, rel=1e-5)
        assert logged["clip/scale"] == pytest.approx(0.5, rel=1e-5)
        assert logged["grad/norm_total_postclip"] == pytest.approx(0.5 * pre, rel=1e-4)
        assert logged["grad/clipped_fraction"] == 1.0


def test_16_mixed_reads_unscaled_gradients():
    # CPU AMP with a GradScaler (scale 1024): the monitors must report what an fp32 run reports, not 1024x
    class ScaledNorm(L.Callback):  # what on_after_backward sees: the scaled gradients
        def on_after_backward(self, trainer, pl_module):
            self.norm = torch.cat([p.grad.flatten() for p in pl_module.parameters()]).norm().item()

    fp32, _ = fit(monitors(), 16, max_steps=1)
    scaler, scaled = torch.amp.GradScaler("cpu", init_scale=1024.0), ScaledNorm()
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    amp, _ = fit([*monitors(), scaled], 16, max_steps=1, plugins=[plugin])
    a, b = fp32.steps[0], amp.steps[0]
    assert scaled.norm == pytest.approx(1024 * b["grad/norm_total_preclip"], rel=1e-3)  # the scaler did scale
    for key in ("grad/norm_total_preclip", "grad/layer/net.0", "delta/layer/net.0", "delta/layer/net.4"):
        assert b[key] == pytest.approx(a[key], rel=2e-2), key


def test_bf16_mixed_matches_fp32():
    fp32, _ = fit(monitors(), 16, max_steps=1)
    bf16, _ = fit(monitors(), 16, max_steps=1, precision="bf16-mixed")
    for key in ("grad/norm_total_preclip", "grad/layer/net.0", "delta/layer/net.0", "weight/layer/net.2"):
        assert bf16.steps[0][key] == pytest.approx(fp32.steps[0][key], rel=5e-2), key


def reference_activations(module: Regressor, x: Tensor, y: Tensor) -> dict[str, float]:
    """Mean/std of every Linear's output and ||dL/d output||, from a forward pass written out by hand."""
    outputs, h = {}, x
    for i, layer in enumerate(module.net):
        h = layer(h)
        if isinstance(layer, nn.Linear):
            outputs[f"net.{i}"] = h
    loss = nn.functional.mse_loss(h, y)
    deltas = torch.autograd.grad(loss, list(outputs.values()))
    ref = {}
    for (name, out), delta in zip(outputs.items(), deltas, strict=True):
        ref[f"act/mean/{name}"] = out.mean().item()
        ref[f"act/std/{name}"] = out.std().item()
        ref[f"delta/layer/{name}"] = delta.norm().item()
    return ref


def test_activation_statistics_and_deltas_match_a_hand_written_pass():
    class Reference(L.Callback):  # runs before ActivationMonitor's hooks exist: an untouched forward pass
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.refs = getattr(self, "refs", {})
            self.refs[trainer.global_step] = reference_activations(pl_module, *batch)

    ref = Reference()
    logger, _ = fit([ref, ActivationMonitor(every_n_steps=2)], 8, max_steps=5)
    assert sorted(logger.steps) == [0, 1, 3]
    for step in (0, 1, 3):
        expected = ref.refs[step]
        assert set(logger.steps[step]) == set(expected)
        for key, value in expected.items():
            assert logger.steps[step][key] == pytest.approx(value, rel=1e-5), key


def test_hooks_exist_only_during_logging_steps():
    seen = []

    class Count(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(sum(len(m._forward_hooks) for m in pl_module.modules()))

    fit([ActivationMonitor(every_n_steps=3), Count()], 8, max_steps=5)
    assert seen == [0] * 5  # removed in the logging step's own on_train_batch_end, before later callbacks


def test_monitors_do_not_change_training():
    _, plain = fit([], 8, max_steps=5, gradient_clip_val=0.3)
    _, watched = fit(monitors(), 8, max_steps=5, gradient_clip_val=0.3)
    for p, q in zip(plain.parameters(), watched.parameters(), strict=True):
        assert torch.equal(p, q)


def test_every_n_steps_must_be_positive():
    with pytest.raises(ValueError, match="every_n_steps"):
        GradNormMonitor(every_n_steps=0)


@pytest.mark.parametrize(("depth", "w"), [(20, 2.0), (100, 0.5)])
def test_seed_chain_in_a_plain_module(depth, w):
    # the seed article's scalar chain written from scratch: x = 1, L = output, δ_l = w^(n-l), ∂L/∂w_l = w^(n-1);
    # at w = 0.5, depth 100 the first δ is 2^-99 ≈ 1.6e-30: its square underflows float32, the log must not
    class Chain(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.Sequential(*(nn.Linear(1, 1, bias=False) for _ in range(depth)))
            for layer in self.layers:
                nn.init.constant_(layer.weight, w)

        def training_step(self, batch, batch_idx):
            return self.layers(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    logger = MemoryLogger()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ActivationMonitor(), GradNormMonitor()],
    )
    trainer.fit(Chain(), DataLoader(TensorDataset(torch.ones(1, 1)), batch_size=1))
    logged = logger.steps[0]
    assert [logged[f"delta/layer/layers.{i}"] for i in range(depth)] == [w ** (depth - 1 - i) for i in range(depth)]
    if w == 2.0:
        assert [logged[f"grad/layer/layers.{i}"] for i in range(depth)] == [524288.0] * depth
        assert logged["grad/norm_total_preclip"] == pytest.approx(524288.0 * math.sqrt(depth))


@pytest.mark.parametrize(
    ("module", "clip", "algorithm", "second_passes"),
    [
        (Regressor(), None, "norm", 0),  # untouched gradients (version counters unchanged): post = pre
        (Regressor(), 0.3, "norm", 4),  # Lightning's own clipping in a foreign project: measured after it
        (Regressor(), 0.02, "value", 4),  # elementwise: measured
        (Regressor(clip_rule=0.5), None, "norm", 4),  # a custom rule without a report: measured
        (ReportingRegressor(clip_rule=0.5), None, "norm", 4),  # a report without a post-clip norm: measured
    ],
)
def test_post_clip_norm_is_measured_only_when_it_is_not_known(monkeypatch, module, clip, algorithm, second_passes):
    import src.callbacks.grad_norm as grad_norm

    calls = []

    def counted(pl_module):
        calls.append(1)
        return grad_norms(pl_module)

    monkeypatch.setattr(grad_norm, "grad_norms", counted)
    probe = GradientProbe()
    logger, _ = fit(
        [probe, GradNormMonitor()], 8, module=module, gradient_clip_val=clip, gradient_clip_algorithm=algorithm
    )
    assert len(calls) == second_passes
    for step in range(4):
        assert logger.steps[step]["grad/norm_total_postclip"] == pytest.approx(probe.post[step], rel=1e-5)


def test_layer_index_follows_a_model_that_changes():
    from src.grad_norms import layer_index

    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    assert layer_index(net).names == ["0", "1"]
    assert layer_index(net) is layer_index(net)  # cached while nothing changes
    net.add_module("2", nn.Linear(1, 1))
    assert layer_index(net).names == ["0", "1", "2"]
    net[0].requires_grad_(False)  # frozen: no longer a layer with a gradient
    assert layer_index(net).names == ["1", "2"]
    net[0].requires_grad_(True)
    assert layer_index(net).names == ["0", "1", "2"]
    net[1].weight = nn.Parameter(torch.zeros(1, 3))  # a replaced parameter is the one measured
    assert any(p is net[1].weight for p in layer_index(net).params)
