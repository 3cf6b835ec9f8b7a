"""Trainer presets, precisions and the SLURM launcher config: they compose, validate and build what they say.

No GPU and no SLURM here: GPU presets are checked as configs, and the multi-node preset as a Trainer built on
CPU inside SLURM's environment variables (Lightning then takes its ranks from SLURM, as under ``srun``).
"""

from __future__ import annotations

import importlib.util

import pytest
from hydra.utils import instantiate
from lightning.pytorch.plugins.environments import LightningEnvironment, SLURMEnvironment
from lightning.pytorch.strategies import DDPStrategy

from src.config.preflight import check
from src.config.validate import ConfigError, validate
from src.environment import run_environment
from tests.conftest import compose_cfg

PRESETS = {  # preset -> what it must resolve to
    "cpu": {"accelerator": "cpu", "devices": 1, "num_nodes": 1},
    "gpu": {"accelerator": "gpu", "devices": 1, "num_nodes": 1},
    "ddp": {"accelerator": "gpu", "devices": -1, "strategy": "ddp", "num_nodes": 1},
    "ddp_sim": {"accelerator": "cpu", "devices": 2, "strategy": "ddp", "num_nodes": 1},
    "multinode": {"accelerator": "gpu", "devices": 4, "strategy": "ddp", "num_nodes": 2},
}


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_compose_and_validate(tmp_path, preset, precision):
    cfg = compose_cfg(tmp_path, [f"trainer={preset}", f"trainer.precision={precision}"], fast=False)
    validate(cfg)  # includes: every trainer key is a Trainer argument
    for key, value in PRESETS[preset].items():
        assert cfg.trainer.get(key, 1 if key == "num_nodes" else None) == value, (preset, key)
    assert cfg.trainer.precision == precision
    assert cfg.trainer.gradient_clip_val == cfg.clip  # presets inherit the clip wiring


def test_bad_precision_is_refused_before_any_output(tmp_path):
    with pytest.raises(ConfigError, match=r"trainer.precision=fp16 is not allowed; expected 32-true, bf16-mixed"):
        check(["trainer=gpu", "trainer.precision=fp16"])
    check(["trainer.precision=32"])  # Lightning's integer spelling is accepted


def test_ddp_sim_builds_a_two_process_gloo_trainer(tmp_path):
    cfg = compose_cfg(tmp_path, ["trainer=ddp_sim"])
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[])  # processes start only in fit()
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.world_size == 2
    assert isinstance(trainer.strategy.cluster_environment, LightningEnvironment)  # Lightning's own launcher
    hardware = run_environment(trainer)
    assert hardware["accelerator"] == "cpu" and hardware["device_count"] == 2 and hardware["world_size"] == 2
    assert hardware["strategy"] == "DDPStrategy" and hardware["precision"] == "32-true"


def test_multinode_preset_takes_its_ranks_from_slurm(tmp_path, monkeypatch):
    # what `srun --nodes=2 --ntasks-per-node=4` sets for the task with global rank 5 (node 1, local rank 1)
    slurm = {
        "SLURM_NTASKS": "8",
        "SLURM_NTASKS_PER_NODE": "4",
        "SLURM_JOB_NAME": "train",
        "SLURM_JOB_ID": "77",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": "1",
        "SLURM_NODELIST": "node[01-02]",
    }
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    cfg = compose_cfg(tmp_path, ["trainer=multinode", "trainer.accelerator=cpu"])  # the GPU preset, on CPU
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
    assert isinstance(trainer.strategy.cluster_environment, SLURMEnvironment)
    assert (trainer.world_size, trainer.global_rank, trainer.node_rank, trainer.local_rank) == (8, 5, 1, 1)
    assert trainer.strategy.cluster_environment.main_address == "node01"
    hardware = run_environment(trainer)
    assert hardware["num_nodes"] == 2 and hardware["world_size"] == 8
    assert hardware["cluster_environment"] == "SLURMEnvironment"


def test_slurm_launcher_without_the_plugin_says_what_to_install(tmp_path):
    if importlib.util.find_spec("hydra_plugins") and importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher"):
        pytest.skip("hydra-submitit-launcher is installed")
    compose_cfg(tmp_path, [])  # the default launcher composes without the plugin
    with pytest.raises(ConfigError, match=r"needs the optional hydra-submitit-launcher: pip install -e '.\[cluster\]'"):
        check(["-m", "hydra/launcher=slurm", "clip=null,1.0"])


def test_slurm_launcher_extends_the_plugins_schema(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="optional extra: pip install -e '.[cluster]'")
    cfg = compose_cfg(tmp_path, ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.tasks_per_node == 1 and launcher.max_num_timeout == 0  # ours, and the plugin's default
    with pytest.raises(ConfigError, match=r"hydra\.launcher\.partitio is not a known key"):
        check(["-m", "hydra/launcher=slurm", "hydra.launcher.partitio=gpu", "clip=null,1.0"])
