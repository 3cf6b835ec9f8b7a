"""ThroughputLogger: optimizer steps/s and global samples/s from the host clock, validation time left out."""

from __future__ import annotations

import time

import lightning as L
import pytest
from hydra.utils import instantiate

from src.build import build_network
from src.callbacks import ThroughputLogger
from src.models import GradLabModule
from tests.telemetry_helpers import MemoryLogger

TRAIN_BATCH_S, VALIDATION_S = 0.05, 0.5


class Slow(L.Callback):
    """Every training micro-batch takes at least TRAIN_BATCH_S, every validation VALIDATION_S more."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        time.sleep(TRAIN_BATCH_S)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:  # inside validation, whatever the order
        time.sleep(VALIDATION_S)


def test_rates_count_optimizer_steps_and_global_samples_but_not_validation(make_cfg):
    # 4 micro-batches per epoch, 2 per optimizer step: a validation inside every 4-step logging window
    cfg = make_cfg("model=mlp", "trainer.max_steps=12", "data.batches_per_epoch=4")
    dm = instantiate(cfg.data)
    module = GradLabModule(build_network(cfg.model, dm.task), dm.task, instantiate(cfg.optimizer))
    logger = MemoryLogger()
    trainer = instantiate(
        cfg.trainer,
        accumulate_grad_batches=2,
        callbacks=[Slow(), ThroughputLogger(every_n_steps=4)],
        logger=logger,
    )
    trainer.fit(module, datamodule=dm)
    steps = logger.series("throughput/steps_per_s")
    samples = logger.series("throughput/samples_per_s")
    assert list(steps) == [3, 7, 11]  # step 0 starts the clock; then Lightning's steps, (s + 1) % 4 == 0
    for step, rate in steps.items():
        # at most one step per 2 sleeping micro-batches; with the validations counted it would be < 3 steps/s
        assert 5.0 < rate <= 1 / (2 * TRAIN_BATCH_S)
        assert samples[step] == pytest.approx(rate * 2 * cfg.data.batch_size)  # 2 micro-batches of the batch
