"""The step's gradients are read once: the monitors, the guard and Lightning's norm clipping share one norm.

Every norm-type kernel that reads a gradient is counted with a real ``TorchDispatchMode`` (torch's own
operator-level hook; nothing is patched), per optimizer step, on the default configuration with ``clip=1.0``.
Before issue 11 the count was 2: GradNormMonitor's ``_foreach_norm`` and Lightning's ``clip_grad_norm_``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torch.utils._python_dispatch import TorchDispatchMode

from src.build import build_network
from src.models import GradLabModule

NORMS = {
    torch.ops.aten._foreach_norm,
    torch.ops.aten.linalg_vector_norm,
    torch.ops.aten.norm,
    torch.ops.aten.frobenius_norm,
}


def _storages(value: Any) -> set[int]:
    if isinstance(value, torch.Tensor):
        return {value.untyped_storage().data_ptr()}
    if isinstance(value, list | tuple):
        return set().union(*(_storages(v) for v in value)) if value else set()
    return set()


class GradientNormReads(TorchDispatchMode):
    """Counts, per optimizer step, the norm kernels whose input shares storage with a ``.grad``."""

    def __init__(self) -> None:
        super().__init__()
        self.step = -1
        self.grads: set[int] = set()
        self.reads: Counter[int] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in NORMS and self.grads & _storages(list(args)):
            self.reads[self.step] += 1
        return func(*args, **(kwargs or {}))


class Track(L.Callback):
    """Tells the counter which step runs and which storages are this step's gradients."""

    def __init__(self, mode: GradientNormReads) -> None:
        self.mode = mode

    def on_after_backward(self, trainer, pl_module) -> None:
        self.mode.step = trainer.global_step
        self.mode.grads = {p.grad.untyped_storage().data_ptr() for p in pl_module.parameters() if p.grad is not None}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.mode.grads = set()


def test_one_gradient_norm_per_step_with_clipping(make_cfg):
    # the default run's model, callbacks and clip (1.0, norm); every step a logging step, so each monitor
    # does all its work on every one of them
    cfg = make_cfg("callbacks=default", "callbacks.progress_bar=null", "trainer.max_steps=6")
    cfg.trainer.log_every_n_steps = 1
    assert cfg.clip == 1.0 and cfg.clip_algorithm.value == "norm" and cfg.model.cell.value == "rnn"
    dm = instantiate(cfg.data)
    module = GradLabModule(build_network(cfg.model, dm.task), dm.task, instantiate(cfg.optimizer))
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    mode = GradientNormReads()
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[Track(mode), *callbacks])
    with mode:
        trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 6
    assert dict(mode.reads) == {step: 1 for step in range(6)}
    clipped = module.clip_report()
    assert clipped is not None and clipped.step == 5 and clipped.rewritten  # the step was clipped (norm > 1)


def test_clipping_with_the_shared_norm_is_bit_identical_to_lightnings(make_cfg):
    class LightningsOwn(GradLabModule):  # Lightning's configure_gradient_clipping: clip_grad_norm_ reads again
        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            L.LightningModule.configure_gradient_clipping(self, optimizer, gradient_clip_val, gradient_clip_algorithm)

    weights, initial = [], []
    for cls in (GradLabModule, LightningsOwn):
        cfg = make_cfg("clip=0.05", "trainer.max_steps=8")
        L.seed_everything(0)
        dm = instantiate(cfg.data)
        module = cls(build_network(cfg.model, dm.task), dm.task, instantiate(cfg.optimizer))
        initial = [p.detach().clone() for p in module.parameters()]
        instantiate(cfg.trainer, logger=False, callbacks=[]).fit(module, datamodule=dm)
        weights.append([p.detach().clone() for p in module.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(weights[0], initial, strict=True))  # it trained
