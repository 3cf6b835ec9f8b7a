"""Mixed precision: GradScaler under a real fp16 overflow (16-mixed), and bf16-mixed without a scaler.

Each test runs on the CPU (Lightning's MixedPrecision plugin with a CPU GradScaler for 16-mixed) and, marked
``gpu``, on CUDA with ``precision=...`` as a user sets it, so the GradScaler is the one Lightning builds.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.plugins.precision import MixedPrecision
from omegaconf import DictConfig
from torch import Tensor, nn

from src.build import build_network
from src.callbacks import DivergenceGuard, GradNormMonitor, GradScalerMonitor
from src.data.datamodule import SyntheticDataModule
from src.models import GradLabModule
from tests.telemetry_helpers import MemoryLogger

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]
LOSS_FACTOR = 1e8  # GradScaler's scale x 1e8 x an O(1) gradient is far above fp16's largest value, 65504
OVERFLOW_STEPS = {3, 6}
STEPS = 10


class LossBlowUp(GradLabModule):
    """The training loss times ``LOSS_FACTOR`` at ``OVERFLOW_STEPS``: a real overflow of the fp16 backward (the
    loss itself, computed in fp32 under autocast, stays finite), as an exploding step gives GradScaler."""

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss = super().training_step(batch, batch_idx)
        return loss * LOSS_FACTOR if self.trainer.global_step in OVERFLOW_STEPS else loss


class ScalerProbe(L.Callback):
    """Per optimizer step, read by other routes than the monitors: the scale before and after the step, the
    norm of the still-scaled gradients after backward (float64), and whether any weight changed."""

    def __init__(self) -> None:
        self.scale_before: dict[int, float] = {}
        self.scale_after: dict[int, float] = {}
        self.scaled_norm: dict[int, float] = {}
        self.changed: dict[int, bool] = {}
        self._weights: list[Tensor] = []

    @staticmethod
    def _scale(trainer: L.Trainer) -> float:
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        return scaler.get_scale() if scaler is not None else 1.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._weights = [p.detach().clone() for p in pl_module.parameters()]
        self.scale_before[trainer.global_step] = self._scale(trainer)

    def on_after_backward(self, trainer, pl_module) -> None:
        grads = [p.grad.detach().double().flatten() for p in pl_module.parameters() if p.grad is not None]
        self.scaled_norm[trainer.global_step] = torch.cat(grads).norm().item()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step - 1  # the optimizer step this batch took (or skipped)
        self.scale_after[step] = self._scale(trainer)
        weights = zip(self._weights, pl_module.parameters(), strict=True)
        self.changed[step] = any(not torch.equal(a, p) for a, p in weights)


LSTM = ("model=lstm", "model.hidden_size=16")


def build(make_cfg, device: str, *overrides: str) -> tuple[DictConfig, SyntheticDataModule, LossBlowUp]:
    cfg = make_cfg(
        *overrides,
        "data=adding",
        "data.seq_len=10",
        "optimizer=adam",
        "clip=1.0",
        "clip_algorithm=norm",
        f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
        f"trainer.max_steps={STEPS}",
        "trainer.log_every_n_steps=1",
    )
    dm = instantiate(cfg.data)
    return cfg, dm, LossBlowUp(build_network(cfg.model, dm.task), dm.task, instantiate(cfg.optimizer))


@pytest.mark.parametrize("device", DEVICES)
def test_fp16_overflow_halves_the_scale_and_skips_the_step_with_unscaled_norms(make_cfg, device):
    # the CPU's oneDNN has no fp16 LSTM: an MLP there; on CUDA the default run's LSTM, in cuDNN's fp16 kernels
    cpu_model = ("model=mlp", "model.depth=3", "model.width=16")
    cfg, dm, module = build(make_cfg, device, *(cpu_model if device == "cpu" else LSTM))
    if device == "cuda":  # as a user asks for it: Lightning builds the CUDA GradScaler (scale 2^16, growth 2000)
        precision: dict[str, Any] = {"precision": "16-mixed"}
    else:
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1000)
        precision = {"precision": None, "plugins": [MixedPrecision("16-mixed", "cpu", scaler=scaler)]}
    probe, guard, logger = ScalerProbe(), DivergenceGuard(), MemoryLogger()
    callbacks = [probe, GradScalerMonitor(), GradNormMonitor(), guard]
    trainer = instantiate(cfg.trainer, **precision, callbacks=callbacks, logger=logger)
    trainer.fit(module, datamodule=dm)
    assert isinstance(trainer.precision_plugin.scaler, torch.amp.GradScaler)

    steps = set(range(STEPS))
    skipped = {s for s in steps if probe.scale_after[s] < probe.scale_before[s]}
    # the injected overflows are skipped (an overflow of the first steps at a fresh CUDA scale of 2^16 may be too)
    assert skipped >= OVERFLOW_STEPS and len(steps - skipped) >= STEPS // 2
    for s in steps:
        assert probe.changed[s] is (s not in skipped), s  # a skipped step leaves every weight as it was
        backoff = 0.5 if s in skipped else 1.0  # no growth: growth_interval is far away
        assert probe.scale_after[s] == probe.scale_before[s] * backoff, s
    # the monitor agrees with the scaler, without reading it on the host between logging steps
    assert logger.series("amp/scale") == probe.scale_after
    assert logger.series("amp/skipped_steps") == {s: float(sum(k <= s for k in skipped)) for s in steps}
    pre, post = logger.series("grad/norm_total_preclip"), logger.series("grad/norm_total_postclip")
    for s in steps - skipped:
        # pre-clip norms are unscaled: the scaled gradients' norm over the scale this step's backward used
        assert pre[s] == pytest.approx(probe.scaled_norm[s] / probe.scale_before[s], rel=1e-5)
        assert post[s] == pytest.approx(min(pre[s], 1.0), rel=1e-5)  # clip=1.0 acts on the unscaled norm
    for s in skipped:
        assert not math.isfinite(pre[s])
    # GradScaler skips its overflows itself: not divergence, nothing skipped by the guard
    assert guard.divergence is None and guard.skipped_steps == 0 and guard.events == []


def cpu_runs_bf16_lstm() -> bool:
    """Whether this CPU's oneDNN has a bf16 LSTM kernel (CPUs without AVX-512 raise "could not create a
    primitive descriptor for the LSTM forward propagation primitive" in torch itself)."""
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            nn.LSTM(2, 2, batch_first=True)(torch.zeros(1, 1, 2))
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_mixed_needs_no_scaler(make_cfg, device):
    if device == "cpu" and not cpu_runs_bf16_lstm():
        pytest.skip("this CPU's oneDNN has no bf16 LSTM kernel (torch raises before gradlab runs)")
    cfg, dm, module = build(make_cfg, device, *LSTM, "trainer.precision=bf16-mixed")
    head = [m for m in module.network.modules() if isinstance(m, nn.Linear)][-1]
    dtypes: set[torch.dtype] = set()
    head.register_forward_hook(lambda mod, args, out: dtypes.add(out.dtype))
    probe, guard, logger = ScalerProbe(), DivergenceGuard(), MemoryLogger()
    trainer = instantiate(cfg.trainer, callbacks=[probe, GradScalerMonitor(), GradNormMonitor(), guard], logger=logger)
    trainer.fit(module, datamodule=dm)
    assert trainer.precision_plugin.scaler is None and dtypes == {torch.bfloat16}  # autocast ran, in bf16
    assert not any(k.startswith("amp/") for metrics in logger.steps.values() for k in metrics)
    # bf16 has float32's exponent range: the x1e8 loss gives a large, finite gradient and the step is taken
    pre = logger.series("grad/norm_total_preclip")
    assert all(math.isfinite(v) for v in pre.values()) and all(probe.changed.values())
    for s in OVERFLOW_STEPS:
        others = [v for k, v in pre.items() if k not in OVERFLOW_STEPS]
        assert pre[s] > 1e4 * max(others), s
    assert guard.divergence is None and guard.events == []
