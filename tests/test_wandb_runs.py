"""W&B runs that compare well and resume: summaries for the runs table, the learning rate under a scheduler, the
run id carried through a checkpoint, and "logged in?" for self-hosted servers. Real wandb, offline."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from src.callbacks import WandbRunId
from src.train import train
from src.wandb_run import wandb_mode
from tests.wandb_runs import offline_run

RNN = ["logger=wandb", "model=rnn", "model.hidden_size=16"]


def wandb_run_of(cfg) -> dict:
    (run_dir,) = Path(cfg.paths.output_dir, "wandb").glob("offline-run-*")
    return offline_run(run_dir)


def logged(run: dict, key: str) -> dict[int, float]:
    return {int(row["trainer/global_step"]): row[key] for row in run["history"] if key in row}


def test_runs_table_summaries_and_the_learning_rate_under_a_scheduler(make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = make_cfg(*RNN, "optimizer=adam", "scheduler=cosine", "clip=0.05", "trainer.log_every_n_steps=2")
    summary = train(cfg)
    run = wandb_run_of(cfg)
    wb = run["summary"]
    # define_metric: the runs table shows the largest pre-clip norm and the best validation loss, not the last
    norms = logged(run, "grad/norm_total_preclip")
    # step 0 and Lightning's logging steps 1, 3, ..., 19 (the rows of train/loss and lr-Adam)
    assert sorted(norms) == [0, *range(1, 20, 2)] and wb["grad/norm_total_preclip"]["max"] == max(norms.values())
    assert wb["grad/norm_total_preclip"]["last"] == norms[max(norms)]
    # the largest norm of every step (not only logging steps) is the monitor's run maximum
    assert wb["grad/norm_max_since_log"]["max"] == pytest.approx(summary["max_grad_norm"], rel=1e-6)
    val = [row["val/loss"] for row in run["history"] if "val/loss" in row]
    assert len(val) == 3 and wb["val/loss"]["min"] == min(val) and wb["val/loss"]["last"] == val[-1]
    assert wb["clipped_fraction"] == summary["steps_clipped"] / 20 > 0.5  # clip 0.05 clips most steps
    assert wb["status"] == "completed" and wb["divergence_step"] is None  # a column every run has
    # LearningRateMonitor, because a scheduler is on: cosine from 3e-3 over trainer.max_steps = 20, logged on
    # Lightning's logging steps (it logs at batch start: steps 1, 3, ... for log_every_n_steps=2)
    lr = logged(run, "lr-Adam")
    assert sorted(lr) == list(range(1, 20, 2))
    for step, value in lr.items():
        assert value == pytest.approx(3e-3 * (1 + math.cos(math.pi * step / 20)) / 2, rel=1e-6)


def test_no_learning_rate_monitor_without_a_scheduler(make_cfg):
    cfg = make_cfg("model=rnn", "model.hidden_size=16", "trainer.max_steps=4")
    train(cfg)
    header = (Path(cfg.paths.output_dir) / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "grad/norm_total_preclip" in header and "lr-" not in header


def test_resume_continues_the_wandb_run(make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    first_cfg = make_cfg(*RNN, "trainer.max_steps=10")
    first = train(first_cfg)
    last = Path(first_cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 10 and WandbRunId.stored_id(checkpoint) == first["wandb_id"]

    second_cfg = make_cfg(*RNN, "trainer.max_steps=20", f"ckpt_path={last}")
    second = train(second_cfg)
    assert second["wandb_id"] == first["wandb_id"]
    run = wandb_run_of(second_cfg)
    assert run["run_id"] == first["wandb_id"] and run["summary"]["status"] == "completed"
    # offline, the resumed part is a new run directory with the same id; its x-axis goes on from step 10
    assert min(logged(run, "train/loss")) >= 10
    again = torch.load(Path(second_cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert again["global_step"] == 20 and WandbRunId.stored_id(again) == first["wandb_id"]


def test_a_checkpoint_without_wandb_starts_a_new_run(make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    first_cfg = make_cfg("model=rnn", "model.hidden_size=16", "trainer.max_steps=10")  # logger=csv
    train(first_cfg)
    last = Path(first_cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert WandbRunId.stored_id(torch.load(last, weights_only=True)) is None
    second = train(make_cfg(*RNN, "trainer.max_steps=12", f"ckpt_path={last}"))
    assert second["status"] == "completed" and len(second["wandb_id"]) == 8


def write_netrc(path: Path, host: str) -> None:
    path.write_text(f"machine {host}\n  login user\n  password {'k' * 40}\n")
    path.chmod(0o600)


def test_logged_in_honours_wandb_base_url(monkeypatch, tmp_path):
    for key in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    write_netrc(tmp_path / ".netrc", "wandb.example.org:8443")  # `wandb login --host` writes host:port
    assert wandb_mode("auto") == "offline"  # logged in to a self-hosted server, not to api.wandb.ai
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org:8443")
    assert wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_BASE_URL", "https://other.example.org")
    assert wandb_mode("auto") == "offline"
    monkeypatch.delenv("WANDB_BASE_URL")
    write_netrc(tmp_path / ".netrc", "api.wandb.ai")
    assert wandb_mode("auto") == "online"
    monkeypatch.setenv("NETRC", str(tmp_path / "elsewhere"))  # wandb reads $NETRC first
    assert wandb_mode("auto") == "offline"
    write_netrc(tmp_path / "elsewhere", "api.wandb.ai")
    assert wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode("auto") == "disabled"
