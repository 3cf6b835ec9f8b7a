"""Shared fixtures: compose the real configs (conf/) and shrink them so a run takes seconds on a CPU."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from src.config import CONF_DIR

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


def compose_cfg(run_dir: Path, overrides: list[str], fast: bool = True) -> DictConfig:
    """Compose conf/train.yaml like scripts/train.py would, with the run directory at ``run_dir``."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=(FAST if fast else []) + overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
        # pinned: ${hydra:...} resolves against the HydraConfig singleton, which the next compose replaces
        cfg.paths.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    counter = iter(range(1000))

    def _make(*overrides: str, fast: bool = True) -> DictConfig:
        return compose_cfg(tmp_path / f"run{next(counter)}", list(overrides), fast)

    return _make


REPO = Path(__file__).resolve().parents[1]
