"""Pre-flight of everything a run builds: object arguments, the Trainer on this machine, ``ckpt_path`` and the run
directory. Every refusal is one line naming the key, exit status 2, and nothing written."""

from __future__ import annotations

import io
from contextlib import redirect_stderr
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from src.config.objects import available_accelerators, check_trainer
from src.config.preflight import check, preflight
from src.config.validate import ConfigError
from src.train import train
from tests.conftest import compose_cfg

OBJECT_ERRORS = [
    # callbacks: each callback's own __init__ checks
    (["callbacks.divergence_guard.on_spike=explode"],
     "callbacks.divergence_guard.on_spike=explode is not allowed; expected one of: warn, skip, stop"),
    (["callbacks.divergence_guard.spike_factor=0.5"],
     "callbacks.divergence_guard.spike_factor=0.5 is not allowed; expected a number > 1"),
    (["callbacks.histograms.bins=0"], "callbacks.histograms.bins=0 is not allowed; expected an integer >= 1"),
    (["callbacks.model_checkpoint.save_top_k=-2"],
     "callbacks.model_checkpoint.save_top_k=-2 is not allowed; FiniteModelCheckpoint says: Invalid value for "
     "save_top_k=-2. Must be >= -1"),
    (["callbacks.model_checkpoint.mode=best"], "callbacks.model_checkpoint.mode=best is not allowed; "
     "FiniteModelCheckpoint says: `mode` can be min, max but got best"),
    # loggers: WandbLogger hands mode and extra keys to wandb.init, which reads them at the first log
    (["logger.wandb.mode=online-ish"], "logger.wandb.mode=online-ish is not allowed; expected one of: auto, online"),
    (["+logger.wandb.entitty=me"], "logger.wandb.entitty is not a key of WandbLogger or wandb.init; expected one of:"),
    # optimizer and scheduler, built against a dummy parameter
    (["optimizer=adam", "+optimizer.betas=[1.5,0.9]"],
     "optimizer.betas=[1.5, 0.9] is not allowed; Adam says: Invalid beta parameter at index 0: 1.5"),
    (["optimizer=sgd", "optimizer.momentum=-0.9"], "optimizer.momentum=-0.9 is not allowed; SGD says: Invalid"),
    (["optimizer=sgd", "+optimizer.nesterov=true", "optimizer.momentum=0"],
     "optimizer.nesterov=true is not allowed; SGD says: Nesterov momentum requires a momentum and zero dampening"),
    (["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size=0 is not allowed; expected an integer >= 1"),
    (["scheduler=step", "+scheduler.last_epoch=5"], "scheduler.last_epoch=5 is not allowed; StepLR says:"),
    # clipping rule and the Trainer (Lightning's own checks, without its side effects)
    (["clipping=autoclip", "clip=null", "clipping.percentile=101"],
     "clipping.percentile=101 is not allowed; expected a number in 0..100"),
    (["+trainer.val_check_interval=-1"], "trainer.val_check_interval=-1 is not allowed; Trainer says: You have "
     "passed invalid value -1 for val_check_interval, it has to be in [0.0, 1.0] or an int"),
    (["+trainer.enable_checkpointing=false"], "trainer.enable_checkpointing=false is not allowed; Trainer says: "
     "Trainer was configured with `enable_checkpointing=False` but found `ModelCheckpoint` in callbacks list"),
    (["trainer=ddp_sim", "trainer.devices=0"], "trainer.devices=0 is not allowed; Trainer says: `Trainer(devices=0)`"),
    (["+trainer.strategy=ddp_spwan"], "trainer.strategy=ddp_spwan is not allowed; Trainer says: You selected an "
     "invalid strategy name: `strategy='ddp_spwan'`"),
]  # fmt: skip


def refused(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The one line preflight prints for ``args``, after checking it exits 2 and writes nothing into ``cwd``."""
    cwd.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(cwd)
    stderr = io.StringIO()
    with redirect_stderr(stderr), pytest.raises(SystemExit) as exit_:
        preflight(args)
    assert exit_.value.code == 2, args
    lines = stderr.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, stderr.getvalue())
    assert list(cwd.iterdir()) == [], args  # no outputs/, lightning_logs/ or wandb/
    return lines[0].removeprefix("error: ")


@pytest.mark.parametrize(("args", "expected"), OBJECT_ERRORS)
def test_object_arguments_are_refused_with_one_line(args, expected, tmp_path, monkeypatch):
    assert expected in refused(args, tmp_path / "cwd", monkeypatch)


def test_the_trainer_is_checked_against_this_machine_unless_the_job_runs_elsewhere(tmp_path):
    if "gpu" in available_accelerators():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match=r"^trainer.accelerator=gpu is not allowed; Trainer says: No supported gpu "
                       r"backend found!; this machine has: cpu, or auto$"):  # fmt: skip
        check(["trainer=gpu"])
    # a CPU "device" is a process: Lightning runs 3 DDP processes on any number of cores, so this is no error
    check(["trainer.accelerator=cpu", "trainer.devices=3"])
    # jobs a SLURM launcher runs on other machines (preflight passes runs_here=False for them): everything but
    # the hardware is still checked here
    gpu_job = compose_cfg(tmp_path, ["trainer=multinode"], fast=False)
    check_trainer(gpu_job, runs_here=False)
    bad = compose_cfg(tmp_path, ["trainer=multinode", "+trainer.val_check_interval=-1"], fast=False)
    with pytest.raises(ConfigError, match=r"^trainer\.val_check_interval=-1 is not allowed"):
        check_trainer(bad, runs_here=False)


def test_good_object_arguments_pass():
    check(["callbacks.divergence_guard.on_spike=skip", "+logger.wandb.entity=me", "logger.wandb.mode=disabled"])
    check(["optimizer=sgd", "+optimizer.nesterov=true", "optimizer.momentum=0.9", "scheduler=cosine"])


# --- ckpt_path ----------------------------------------------------------------------------------------------

SMALL_RNN = ["model=rnn", "model.hidden_size=16", "trainer.max_steps=4"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished small run, with the composed config beside it as Hydra would have saved it."""
    path = tmp_path_factory.mktemp("run")
    cfg = compose_cfg(path, SMALL_RNN)
    train(cfg)
    (path / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), path / ".hydra" / "config.yaml")
    return path


def test_a_compatible_checkpoint_passes(run_dir):
    check([*SMALL_RNN, f"ckpt_path={run_dir}/checkpoints/last.ckpt"])


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["model.hidden_size=32"], "was saved by a different model (network.rnn.weight_ih_l0 is [16, 2] there, "
         "[32, 2] here; its run had model.hidden_size=16 (here 32)); expected the model and task config"),
        (["model=lstm", "model.hidden_size=16"], "(network.rnn.weight_ih_l0 is [16, 2] there, [64, 2] here; its run "
         "had model.cell=rnn (here lstm)"),
        (["data=copy"], "its run had data.task=adding (here copy)"),
        (["clipping=autoclip", "clip=null"], "was saved by a different model or clipping rule (missing clipper."),
        (["optimizer=adam"], "was saved with another optimizer (its settings dampening, momentum, nesterov; Adam "
         "has amsgrad, betas"),
    ],
)  # fmt: skip
def test_a_checkpoint_of_another_model_is_refused(run_dir, overrides, expected, tmp_path, monkeypatch):
    message = refused([*SMALL_RNN, *overrides, f"ckpt_path={run_dir}/checkpoints/last.ckpt"], tmp_path, monkeypatch)
    assert message.startswith(f"ckpt_path={run_dir}/checkpoints/last.ckpt ") and expected in message


def bad_checkpoints(run_dir: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    data = (run_dir / "checkpoints" / "last.ckpt").read_bytes()
    (tmp / "truncated.ckpt").write_bytes(data[: len(data) // 2])  # a writer killed mid-file (not ours)
    torch.save({"weights": torch.zeros(2)}, tmp / "foreign.ckpt")
    torch.save({"state_dict": {"net.0.weight": torch.zeros(2)}, "pytorch-lightning_version": "2.6"}, tmp / "other.ckpt")
    (tmp / "a_dir.ckpt").mkdir()
    return {
        "missing": (tmp / "missing.ckpt", "does not exist; expected a checkpoint a gradlab run wrote"),
        "directory": (tmp / "a_dir.ckpt", "is not a file; expected a checkpoint"),
        "truncated": (tmp / "truncated.ckpt", "cannot be read (truncated, or not a torch file:"),
        "foreign": (tmp / "foreign.ckpt", "is not a Lightning training checkpoint (no state_dict)"),
        "other model": (tmp / "other.ckpt", "is not a gradlab checkpoint (no network.* weights)"),
    }


def test_unreadable_checkpoints_are_refused(run_dir, tmp_path, monkeypatch):
    for name, (path, expected) in bad_checkpoints(run_dir, tmp_path).items():
        message = refused([*SMALL_RNN, f"ckpt_path={path}"], tmp_path / name.replace(" ", "_"), monkeypatch)
        assert message.startswith(f"ckpt_path={path} ") and expected in message


# --- the run directory --------------------------------------------------------------------------------------


def test_no_run_writes_into_a_directory_holding_a_run_unless_asked(run_dir, tmp_path, monkeypatch):
    resume = f"ckpt_path={run_dir}/checkpoints/last.ckpt"
    assert refused([*SMALL_RNN, f"hydra.run.dir={run_dir}", resume], tmp_path / "cwd", monkeypatch) == (
        f"hydra.run.dir={run_dir} already holds a run (summary.json, csv/metrics.csv, checkpoints/last.ckpt); "
        "expected a new directory (leave hydra.run.dir at its default: a resumed run writes a new one), or "
        "overwrite=true to write into this one"
    )
    check([*SMALL_RNN, f"hydra.run.dir={run_dir}", resume, "overwrite=true"])
    check([*SMALL_RNN, f"hydra.run.dir={tmp_path / 'new'}", resume])
    (tmp_path / "sweep" / "1_rnn-adding-clip1.0").mkdir(parents=True)  # the second job of an earlier sweep
    (tmp_path / "sweep" / "1_rnn-adding-clip1.0" / "summary.json").write_text("{}")
    sweep = ["-m", *SMALL_RNN, f"hydra.sweep.dir={tmp_path / 'sweep'}", "seed=0,1"]
    message = refused(sweep, tmp_path / "c2", monkeypatch)
    assert message.startswith(f"hydra.sweep.dir={tmp_path}/sweep/1_rnn-adding-clip1.0 already holds a run (summary")


def test_resuming_in_place_continues_the_run(tmp_path):
    first = compose_cfg(tmp_path, ["model=mlp", "trainer.max_steps=10"])
    train(first)
    last = tmp_path / "checkpoints" / "last.ckpt"
    resumed = train(compose_cfg(tmp_path, ["model=mlp", "trainer.max_steps=20", f"ckpt_path={last}", "overwrite=true"]))
    assert resumed["status"] == "completed" and resumed["steps"] == 20 and resumed["optimizer_steps"] == 10
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 20  # replaced in place
