"""Shared fixtures: compose the real configs (conf/) and shrink them so a run takes seconds on a CPU."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from src.config.compose import compose_run

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# small and fast, but the same code path as a real run
FAST = [
    "trainer.accelerator=cpu",
    "trainer.max_steps=20",
    "trainer.log_every_n_steps=5",
    "trainer.enable_model_summary=false",
    "trainer.enable_progress_bar=false",
    "data.batch_size=16",
    "data.batches_per_epoch=10",
    "data.val_size=64",
    "data.test_size=64",
    "data.seq_len=10",
    "callbacks=minimal",
    "logger=csv",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests (and parameters) marked ``gpu`` skip where no CUDA device is visible: ``make test`` runs none."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (make gpu-check)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


def compose_cfg(run_dir: Path, overrides: list[str], fast: bool = True) -> DictConfig:
    """Compose conf/train.yaml like scripts/train.py would, with the run directory at ``run_dir``."""
    return compose_run((FAST if fast else []) + overrides, run_dir)


@pytest.fixture(autouse=True)
def _restore_process_state() -> Iterator[None]:
    """Undo what an in-process Trainer leaves behind for the next test.

    A Trainer built under simulated SLURM ranks writes ``MASTER_ADDR``/``MASTER_PORT`` into ``os.environ``
    (later DDP subprocesses then dial that host and hang) and sets Lightning's process-wide
    ``rank_zero_only.rank`` (later runs in this process then get dummy loggers).
    """
    env, rank = dict(os.environ), rank_zero_only.rank
    yield
    os.environ.clear()
    os.environ.update(env)
    rank_zero_only.rank = rank


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    counter = iter(range(1000))

    def _make(*overrides: str, fast: bool = True) -> DictConfig:
        return compose_cfg(tmp_path / f"run{next(counter)}", list(overrides), fast)

    return _make


REPO = Path(__file__).resolve().parents[1]
