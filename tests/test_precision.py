"""GradScaler telemetry under 16-mixed (imitated on CPU with Lightning's MixedPrecision plugin)."""

from __future__ import annotations

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.plugins.precision import MixedPrecision

from src.callbacks import GradScalerMonitor
from src.models import GradLabModule
from src.train import build_network
from tests.telemetry_helpers import MemoryLogger


class Overflow(L.Callback):
    """An inf in the loss's backward at chosen steps: GradScaler must skip those steps and halve its scale."""

    def __init__(self, steps: set[int]) -> None:
        self.steps = steps

    def on_after_backward(self, trainer, pl_module) -> None:
        if trainer.global_step in self.steps:
            next(pl_module.parameters()).grad.view(-1)[0] = float("inf")


def test_scale_and_skipped_steps_are_logged(make_cfg):
    cfg = make_cfg("model=mlp", "clip=null", "trainer.max_steps=6", "trainer.log_every_n_steps=1")
    dm = instantiate(cfg.data)
    module = GradLabModule(build_network(cfg.model, dm.task), dm.task, instantiate(cfg.optimizer))
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1000)
    logger = MemoryLogger()
    trainer = instantiate(
        cfg.trainer,
        precision=None,
        plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
        callbacks=[Overflow({2, 4}), GradScalerMonitor()],
        logger=logger,
    )
    trainer.fit(module, datamodule=dm)
    scales = logger.series("amp/scale")
    skipped = logger.series("amp/skipped_steps")
    assert scales == {0: 1024.0, 1: 1024.0, 2: 512.0, 3: 512.0, 4: 256.0, 5: 256.0}
    assert skipped == {0: 0.0, 1: 0.0, 2: 1.0, 3: 1.0, 4: 2.0, 5: 2.0}
