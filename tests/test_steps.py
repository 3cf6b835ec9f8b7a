"""src/steps.py reads Lightning's step once per batch; the guard's running median is the sorted window's."""

from __future__ import annotations

import random
import statistics

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from src import steps
from src.callbacks.divergence import Window
from tests.tiny_module import Tiny


class Checker(L.Callback):
    """At every hook of every batch, the cached values against Lightning's own, read afresh."""

    def __init__(self) -> None:
        self.checked: list[tuple[str, int, int | None]] = []

    def _before(self, trainer: L.Trainer, hook: str) -> None:
        assert steps.upcoming_step(trainer) == trainer.global_step, hook
        assert steps.is_rank_zero(trainer) == trainer.is_global_zero
        self.checked.append((hook, trainer.global_step, None))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._before(trainer, "on_train_batch_start")

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._before(trainer, "on_before_backward")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._before(trainer, "on_before_optimizer_step")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        expected = None if trainer.fit_loop._should_accumulate() else trainer.global_step - 1
        assert steps.step_taken(trainer) == expected
        self.checked.append(("on_train_batch_end", trainer.global_step, expected))


def test_cached_steps_follow_every_batch_and_micro_batch(tmp_path) -> None:
    checker = Checker()
    data = DataLoader(TensorDataset(torch.randn(12, 2), torch.randn(12, 1)), batch_size=2)  # 6 batches an epoch
    trainer = L.Trainer(max_steps=7, accumulate_grad_batches=2, logger=False, callbacks=[checker],
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(Tiny(), data)
    taken = [step for hook, _, step in checker.checked if hook == "on_train_batch_end"]
    assert taken == [s for step in range(7) for s in (None, step)]  # micro-batch, step, ... across 3 epochs
    assert trainer.global_step == 7


def test_window_median_is_the_lower_median_of_its_last_values() -> None:
    rng = random.Random(0)
    window, kept = Window(7), []
    assert window.median() != window.median()  # NaN while empty
    for _ in range(200):
        value = rng.choice([rng.random(), 0.5, 2.0])  # ties too
        window.append(value)
        kept = [*kept, value][-7:]
        assert list(window) == kept and window.median() == statistics.median_low(kept)
    window.clear()
    assert len(window) == 0 and list(window) == []
