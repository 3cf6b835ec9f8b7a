"""PacedRichProgressBar: the training bar updated at most refresh_rate times a second, and on the last batch."""

from __future__ import annotations

from typing import Any

import lightning as L
import pytest
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.demos.boring_classes import BoringModel

import src.callbacks.progress_bar as progress_bar
from src.build import build
from src.callbacks import PacedRichProgressBar


def fit_counting_updates(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, **trainer: Any) -> list[int]:
    """batch_idx of every training-bar update, under a clock that advances 1/8 s per batch."""
    clock = iter(i / 8 for i in range(10_000))
    monkeypatch.setattr(progress_bar, "monotonic", lambda: next(clock))
    updated: list[int] = []
    parent = RichProgressBar.on_train_batch_end

    def counting(self: RichProgressBar, *args: Any) -> None:
        updated.append(args[-1])
        parent(self, *args)

    monkeypatch.setattr(RichProgressBar, "on_train_batch_end", counting)
    L.Trainer(
        callbacks=[PacedRichProgressBar(refresh_rate=1)],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
        **trainer,
    ).fit(BoringModel())
    return updated


def test_the_bar_updates_once_a_second_and_on_each_epochs_last_batch(monkeypatch, tmp_path):
    # 1/8 s a batch, one update a second: every 8th batch from the first, and each epoch's last (24)
    updated = fit_counting_updates(monkeypatch, tmp_path, max_epochs=2, limit_train_batches=25)
    assert updated == [0, 8, 16, 24, 7, 15, 23, 24]


def test_the_runs_last_step_updates_the_bar(monkeypatch, tmp_path):
    assert fit_counting_updates(monkeypatch, tmp_path, max_steps=13, limit_train_batches=64) == [0, 8, 12]


def test_the_default_run_uses_it(make_cfg):
    trainer = build(make_cfg("callbacks=default", "trainer.enable_progress_bar=true")).trainer
    assert isinstance(trainer.progress_bar_callback, PacedRichProgressBar)
