"""Clipping against its definitions, the seed article's worked examples, and its interactions.

Lightning's norm and value clipping (``clip``, ``clip_algorithm``) are tested through the one path a run takes
(a Trainer, GradLabModule.configure_gradient_clipping, src/clipping/apply.py); the rules Lightning lacks also
directly, from the step's shared norms.
"""

from __future__ import annotations

import functools
import math

import lightning as L
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from src.build import build_network
from src.callbacks import GradNormMonitor
from src.clipping import AdaptiveGradClip, AutoClip, ClipReport, LayerwiseNormClip, ZClip
from src.config.preflight import check
from src.config.validate import ConfigError
from src.data.scalar import ScalarSignal
from src.grad_norms import grad_norms
from src.models import GradLabModule
from src.train import train
from tests.telemetry_helpers import MemoryLogger


def with_grads(*grads: list[float]) -> nn.Module:
    """A module with one parameter per given gradient (each its own layer), gradients set."""
    module = nn.Module()
    for i, g in enumerate(grads):
        layer = nn.Module()
        layer.weight = nn.Parameter(torch.zeros(len(g)))
        layer.weight.grad = torch.tensor(g, dtype=torch.float32)
        module.add_module(f"w{i + 1}", layer)
    return module


def grads(module: nn.Module) -> list[list[float]]:
    return [p.grad.tolist() for p in module.parameters()]


class FixedGradient(nn.Module):
    """A network whose output is Σ_i w_i·g_i (per sample, times the input x = 1): with the chain's loss (the
    output itself), the gradient of layer i is exactly g_i."""

    sequence_model = False

    def __init__(self, *gradients: list[float]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(len(g), 1, bias=False) for g in gradients)
        self.register_buffer("g", torch.cat([torch.tensor(g) for g in gradients]))
        for layer in self.layers:
            nn.init.zeros_(layer.weight)

    def forward(self, x: Tensor) -> Tensor:
        w = torch.cat([layer.weight.flatten() for layer in self.layers])
        return x * (w * self.g).sum()  # (B, 1)


def fit_on_ones(module: GradLabModule, callbacks: list[L.Callback], max_steps: int, **trainer_kwargs) -> None:
    """Train ``module`` on the input x = 1 (FixedGradient's loss then has exactly its gradients)."""
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_kwargs,
    )
    trainer.fit(module, DataLoader(TensorDataset(torch.ones(1, 1), torch.zeros(1, 1)), batch_size=1))


def clip_through_the_one_path(
    *gradients: list[float], clip: float | None = None, algorithm: str = "norm", rule=None
) -> tuple[list[list[float]], dict[str, float]]:
    """One optimizer step of a real Trainer with these gradients: (the gradients after clipping, step 0's log)."""

    class Clipped(L.Callback):  # after the update (lr 0): the gradients as clipping left them
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.grads = [layer.weight.grad.flatten().tolist() for layer in pl_module.network.layers]

    probe, logger = Clipped(), MemoryLogger()
    task = ScalarSignal().task
    sgd = functools.partial(torch.optim.SGD, lr=0.0)
    module = GradLabModule(FixedGradient(*gradients), task, sgd, clipper=rule)
    fit_on_ones(
        module, [probe, GradNormMonitor()], 1, logger=logger, gradient_clip_val=clip, gradient_clip_algorithm=algorithm
    )
    return probe.grads, logger.steps[0]


def test_seed_global_norm_example():
    (clipped,), logged = clip_through_the_one_path([16.0, 12.0, -8.0], clip=5.0)
    assert math.sqrt(464) == pytest.approx(21.540659, abs=1e-6)
    # the seed prints [3.714, 2.786, -1.857]; 12·5/√464 = 2.78543 rounds to 2.785
    assert clipped == pytest.approx([3.713907, 2.785430, -1.856953], abs=1e-5)
    assert np.round(clipped, 3).tolist() == [3.714, 2.785, -1.857]
    scale = logged["grad/norm_total_postclip"] / logged["grad/norm_total_preclip"]
    assert scale == pytest.approx(5 / math.sqrt(464), rel=1e-6)
    assert np.linalg.norm(clipped) == pytest.approx(5.0, rel=1e-6)
    assert np.allclose(np.array(clipped) / np.linalg.norm(clipped), np.array([16, 12, -8]) / math.sqrt(464))


def test_seed_question_2_same_direction():
    (small,), logged = clip_through_the_one_path([3.0, 4.0], clip=2.0)
    assert logged["grad/norm_total_postclip"] / logged["grad/norm_total_preclip"] == pytest.approx(0.4, rel=1e-6)
    assert small == pytest.approx([1.2, 1.6], rel=1e-6)
    (large,), _ = clip_through_the_one_path([6.0, 8.0], clip=2.0)
    assert large == pytest.approx([1.2, 1.6], rel=1e-6)  # same clipped vector, same direction


def test_value_clipping():
    (clipped,), _ = clip_through_the_one_path([16.0, 0.5, -8.0], clip=5.0, algorithm="value")
    assert clipped == [5.0, 0.5, -5.0]


def test_seed_question_4_global_clipping_starves_the_small_layer():
    (w1, w2), _ = clip_through_the_one_path([100.0, 0.0], [0.0, 0.1], clip=1.0)
    norm = math.sqrt(100**2 + 0.1**2)
    assert w1 == pytest.approx([100 / norm, 0.0], rel=1e-5)
    assert w2[1] == pytest.approx(0.1 / norm, rel=1e-4)  # ~0.001: W2's update shrinks 1000x
    (w1, w2), logged = clip_through_the_one_path([100.0, 0.0], [0.0, 0.1], rule=LayerwiseNormClip(1.0))
    assert w1 == pytest.approx([1.0, 0.0], rel=1e-5) and w2 == pytest.approx([0.0, 0.1], rel=1e-6)
    assert int(logged["clip/layers_clipped"]) == 1
    layerwise = with_grads([100.0, 0.0], [0.0, 0.1])  # the rule alone, from the shared norms
    postclip_norm, stats = LayerwiseNormClip(1.0)(grad_norms(layerwise))
    assert grads(layerwise) == [pytest.approx([1.0, 0.0], rel=1e-5), pytest.approx([0.0, 0.1], rel=1e-6)]
    assert int(stats["clip/layers_clipped"]) == 1 and float(postclip_norm) == pytest.approx(math.sqrt(1.01), rel=1e-5)


def test_agc_against_a_hand_computation():
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 1.0]]))  # unit norms 5 and 1
        net[1].weight.copy_(torch.tensor([[1.0, 1.0]]))
    net[0].weight.grad = torch.tensor([[30.0, 40.0], [0.0, 0.001]])  # unit ratios 10 and 0.001
    net[1].weight.grad = torch.tensor([[500.0, 0.0]])
    AdaptiveGradClip(clipping=0.1)(grad_norms(net))
    # unit 0: ratio 10 > 0.1, rescaled to 0.1·5/50 of itself; unit 1: 0.001 < 0.1, untouched
    assert torch.allclose(net[0].weight.grad, torch.tensor([[0.3, 0.4], [0.0, 0.001]]), rtol=1e-5, atol=0)
    assert net[1].weight.grad.tolist() == [[500.0, 0.0]]  # the final layer is excluded, as in the paper
    postclip_norm, _ = AdaptiveGradClip(clipping=0.1, exclude_final=False)(grad_norms(net))
    assert net[1].weight.grad[0].tolist() == pytest.approx([0.1 * math.sqrt(2), 0.0], rel=1e-5)
    # the post-clip norm it reports, derived from the unit norms, is the norm of the clipped gradients
    every = torch.cat([p.grad.flatten() for p in net.parameters()])
    assert float(postclip_norm) == pytest.approx(every.norm().item(), rel=1e-5)


def test_agc_eps_lets_zero_weights_move():
    net = nn.Sequential(nn.Linear(3, 1, bias=False), nn.Linear(1, 1))
    nn.init.zeros_(net[0].weight)
    net[0].weight.grad = torch.tensor([[1.0, 0.0, 0.0]])
    AdaptiveGradClip(clipping=0.01, eps=1e-3)(grad_norms(net))
    assert net[0].weight.grad[0, 0].item() == pytest.approx(0.01 * 1e-3, rel=1e-5)


def test_autoclip_uses_the_percentile_of_the_history_including_the_current_norm():
    rule = AutoClip(percentile=10, history=100)
    seen = []
    for norm in [5.0, 1.0, 3.0, 8.0, 2.0, 9.0]:
        module = with_grads([norm, 0.0])
        seen.append(norm)
        postclip_norm, stats = rule(grad_norms(module))
        expected = np.percentile(seen, 10)  # numpy's linear interpolation, like torch.quantile
        assert float(stats["clip/threshold"]) == pytest.approx(expected, rel=1e-6)
        assert grads(module)[0][0] == pytest.approx(min(norm, expected), rel=1e-5)
        assert float(postclip_norm) == pytest.approx(min(norm, expected), rel=1e-5)


def zclip_reference(norms: list[float], alpha=0.97, z_thresh=2.5, warmup=5, eps=1e-6) -> list[float]:
    """The ZClip rule in plain Python floats (thresholds per step; inf = not clipped)."""
    out, buf, mean, var = [], [], 0.0, 0.0
    for g in norms:
        if len(buf) < warmup:
            buf.append(g)
            out.append(math.inf)
            if len(buf) == warmup:
                mean = sum(buf) / warmup
                var = sum((b - mean) ** 2 for b in buf) / warmup
            continue
        std = math.sqrt(var)
        z = (g - mean) / (std + eps)
        thr = mean + z_thresh**2 * std / z if z > z_thresh else math.inf
        out.append(thr)
        clipped = min(g, thr)
        mean = alpha * mean + (1 - alpha) * clipped
        var = alpha * var + (1 - alpha) * (clipped - mean) ** 2
    return out


def test_zclip_zscore_rule_over_a_scripted_sequence():
    norms = [1.0, 2.0, 1.0, 2.0, 1.0, 1.5, 5.0, 1.2, 20.0, 1.4]
    rule = ZClip(warmup_steps=5)
    expected = zclip_reference(norms)
    # by hand: warm-up [1, 2, 1, 2, 1] gives μ = 1.4, σ² = 0.24; 1.5 is no spike and moves the EMA to
    # μ = 1.403, σ² = 0.233082; then 5.0 has z = 7.45 > 2.5 and is clipped to μ + 2.5²·σ/z
    mean, var = 0.97 * 1.4 + 0.03 * 1.5, 0.97 * 0.24 + 0.03 * (1.5 - 1.403) ** 2
    z = (5.0 - mean) / math.sqrt(var)
    assert expected[5] == math.inf and expected[6] == pytest.approx(mean + 6.25 * math.sqrt(var) / z, rel=1e-6)
    for norm, thr in zip(norms, expected, strict=True):
        module = with_grads([norm])
        postclip_norm, stats = rule(grad_norms(module))
        assert float(stats["clip/threshold"]) == pytest.approx(thr, rel=1e-5)
        assert grads(module)[0][0] == pytest.approx(min(norm, thr), rel=1e-5)
        assert float(postclip_norm) == pytest.approx(min(norm, thr), rel=1e-5)


@pytest.mark.parametrize("make_rule", [lambda: AutoClip(percentile=10, history=8), lambda: ZClip(warmup_steps=2)])
def test_a_step_without_gradients_leaves_the_history_alone(make_rule):
    # a step the divergence guard skipped has every .grad set to None when clipping runs (src/clipping/apply.py):
    # nothing is clipped and no norm of 0 goes into the history
    class SkipStep(L.Callback):  # the guard's skip, at step 3
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.pre = grad_norms(pl_module).total_norm.item()
            if trainer.global_step == 3:
                for p in pl_module.parameters():
                    p.grad = None

    class Record(L.Callback):
        def __init__(self) -> None:
            self.states, self.reports, self.norms = [], [], []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.states.append({k: v.clone() for k, v in pl_module.clipper.state_dict().items()})
            self.reports.append(pl_module.clip_report())
            self.norms.append(skip.pre)

    rule, skip, record = make_rule(), SkipStep(), Record()
    sgd = functools.partial(torch.optim.SGD, lr=0.01)
    module = GradLabModule(FixedGradient([3.0, 4.0]), ScalarSignal().task, sgd, clipper=rule)
    fit_on_ones(module, [skip, record], 5, logger=False)
    assert record.reports[3] == ClipReport(3)  # nothing rewritten, no metrics
    for key, value in record.states[2].items():  # the skipped step left the rule's state as it was
        torch.testing.assert_close(record.states[3][key], value, equal_nan=True)
    assert int(rule.count) == 4 and record.reports[4].rewritten
    # and the next real step sees only real norms: AutoClip's 10th percentile of the four recorded ones
    if isinstance(rule, AutoClip):
        expected = np.percentile([n for i, n in enumerate(record.norms) if i != 3], 10)
        assert float(record.reports[4].metrics["clip/threshold"]) == pytest.approx(expected, rel=1e-6)


def fit_with(make_cfg, overrides, callbacks=(), **trainer_kwargs):
    cfg = make_cfg(*overrides)
    dm = instantiate(cfg.data)
    rule = instantiate(cfg.clipping) if cfg.clipping else None
    module = GradLabModule(build_network(cfg.model, dm.task), dm.task, instantiate(cfg.optimizer), clipper=rule)
    logger = MemoryLogger()
    trainer = instantiate(cfg.trainer, callbacks=list(callbacks), logger=logger, **trainer_kwargs)
    trainer.fit(module, datamodule=dm)
    return module, trainer, logger


def test_clip_stats_reach_the_telemetry(make_cfg):
    overrides = ["model=mlp", "clipping=layerwise", "clipping.max_norm=0.01", "trainer.max_steps=3"]
    _, _, logger = fit_with(make_cfg, [*overrides, "trainer.log_every_n_steps=1"], [GradNormMonitor()])
    assert logger.steps[0]["clip/threshold"] == pytest.approx(0.01)
    assert 0 < logger.steps[0]["clip/scale"] < 1


@pytest.mark.parametrize("clipping", ["clip=0.001", "clipping=layerwise"])
def test_amp_rules_see_unscaled_gradients(make_cfg, clipping):
    from lightning.pytorch.plugins.precision import MixedPrecision

    class PostClip(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.norms = [p.grad.norm().item() for p in pl_module.network.parameters() if p.grad is not None]
            self.layers = [
                torch.cat([p.grad.flatten() for p in m.parameters(recurse=False)]).norm().item()
                for m in pl_module.network.modules()
                if any(True for _ in m.parameters(recurse=False))
            ]

    probe = PostClip()
    amp = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=8.0))
    rule = ["clip=null", "clipping.max_norm=0.001"] if clipping == "clipping=layerwise" else []
    overrides = ["model=mlp", "model.depth=2", clipping, *rule, "trainer.max_steps=2"]
    fit_with(make_cfg, overrides, [probe], plugins=[amp], precision=None)
    if clipping == "clip=0.001":  # Lightning's norm clipping, through the one path
        total = math.sqrt(sum(n**2 for n in probe.norms))
        assert total == pytest.approx(0.001, rel=1e-2)  # clipped scaled gradients would read 0.001/8 here
    else:  # every layer of the MLP is far above 0.001 before clipping: each is capped there
        assert probe.layers == pytest.approx([0.001] * len(probe.layers), rel=1e-2)


def test_accumulation_clips_once_per_optimizer_step(make_cfg):
    calls = []

    class Counting(LayerwiseNormClip):
        def clip(self, stats):
            calls.append(1)
            return super().clip(stats)

    cfg = make_cfg("model=mlp", "clip=null", "trainer.max_steps=4", "trainer.accumulate_grad_batches=3")
    dm = instantiate(cfg.data)
    module = GradLabModule(build_network(cfg.model, dm.task), dm.task, instantiate(cfg.optimizer), clipper=Counting())
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
    trainer.fit(module, datamodule=dm)
    assert len(calls) == trainer.global_step == 4


@pytest.mark.parametrize("rule", ["autoclip", "zclip"])
def test_stateful_rules_resume_identically(make_cfg, rule):
    extra = ["clipping.warmup_steps=3"] if rule == "zclip" else []
    straight = train(make_cfg("model=mlp", f"clipping={rule}", *extra, "trainer.max_steps=20"))
    first = make_cfg("model=mlp", f"clipping={rule}", *extra, "trainer.max_steps=10")
    train(first)
    last = f"{first.paths.output_dir}/checkpoints/last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    assert int(state["clipper.count"]) == 10  # the rule's history is in the checkpoint
    resumed = train(make_cfg("model=mlp", f"clipping={rule}", *extra, "trainer.max_steps=20", f"ckpt_path={last}"))
    assert resumed["metrics"]["val/loss"] == pytest.approx(straight["metrics"]["val/loss"], rel=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["clipping=agc", "clip=1.0"], "clipping=AdaptiveGradClip cannot be combined with clip=1.0"),
        (["+trainer.strategy=fsdp"], "clip_algorithm=norm is not supported with trainer.strategy=fsdp"),
        (["+trainer.strategy=deepspeed", "clip_algorithm=value"], "clip_algorithm=value is not supported"),
    ],
)
def test_unsupported_combinations_are_refused(args, message):
    with pytest.raises(ConfigError, match=message):
        check(args)
    check(["loss.grad_penalty=0.1", "clip=1.0"])  # a loss term combines with clipping


def test_penalty_adds_the_squared_gradient_norm(make_cfg):
    summary = train(make_cfg("model=mlp", "loss.grad_penalty=0.5", "trainer.max_steps=5"))
    assert summary["status"] == "completed"
    assert "train/grad_penalty" in summary["metrics"] and "train/loss_unpenalised" in summary["metrics"]
    net = nn.Linear(2, 1)
    x = torch.tensor([[1.0, 2.0]])
    loss = net(x).pow(2).sum()
    module = GradLabModule(net, ScalarSignal().task, torch.optim.SGD, grad_penalty=0.5)
    penalty = module.gradient_penalty(loss)
    grads_ = torch.autograd.grad(net(x).pow(2).sum(), list(net.parameters()))
    assert penalty.item() == pytest.approx(0.5 * sum(g.pow(2).sum() for g in grads_).item(), rel=1e-6)
    assert penalty.requires_grad  # differentiable: its gradient needs the double backward


def test_the_gradient_penalty_is_a_loss_option_not_a_clipping_rule():
    for gone in ("penalty", "norm", "value"):  # Lightning's clip/clip_algorithm, and loss.grad_penalty
        with pytest.raises(ConfigError, match=f"clipping={gone} is not a known option"):
            check([f"clipping={gone}"])
    with pytest.raises(ConfigError, match=r"loss\.grad_penalty=-1\.0 is not allowed; expected a number >= 0"):
        check(["loss.grad_penalty=-1"])
