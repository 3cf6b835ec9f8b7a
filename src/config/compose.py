"""Compose conf/train.yaml outside ``@hydra.main`` (tests, benchmarks), exactly as scripts/train.py would."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from src.config import CONF_DIR, register


def compose_run(overrides: list[str], run_dir: Path) -> DictConfig:
    """The config of one run of ``overrides``, writing into ``run_dir``; also set as the current HydraConfig."""
    register()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
        # pinned: ${hydra:...} resolves against the HydraConfig singleton, which the next compose replaces
        cfg.paths.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    return cfg
