"""Logger choices: W&B offline with the resolved config, TensorBoard, none — all without a network."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from src.loggers import StepCSVLogger
from src.train import train
from src.wandb_run import wandb_mode
from tests.wandb_runs import offline_run


def test_wandb_offline_run_has_the_resolved_config(make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = make_cfg("logger=wandb", "model=gru", "clip=0.5")
    summary = train(cfg)
    runs = list(Path(cfg.paths.output_dir, "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and summary["wandb_dir"] == str(runs[0])
    run = offline_run(runs[0])
    config = run["config"]
    assert config["clip"] == 0.5
    assert config["model"]["cell"] == "gru"  # enums as plain strings
    assert config["trainer"]["gradient_clip_val"] == 0.5  # interpolation resolved
    assert "${" not in str(config)
    assert run["summary"]["status"] == "completed" and "train/loss" in run["history_keys"]
    assert (Path(cfg.paths.output_dir) / "csv" / "metrics.csv").exists()


@pytest.mark.parametrize("choice", ["tensorboard", "none"])
def test_other_logger_choices(make_cfg, choice):
    cfg = make_cfg(f"logger={choice}")
    assert train(cfg)["status"] == "completed"
    run_dir = Path(cfg.paths.output_dir)
    assert (run_dir / "summary.json").exists()
    assert (run_dir / "tensorboard").exists() == (choice == "tensorboard")
    assert not (run_dir / "wandb").exists()


def test_wandb_mode_auto(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: not logged in
    assert wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode("auto") == "disabled"


def test_tensorboard_logger_without_its_extra_is_refused_before_output(monkeypatch, tmp_path, capsys):
    from src.config.preflight import preflight

    for module in ("tensorboard", "tensorboardX"):
        monkeypatch.setitem(sys.modules, module, None)  # as if the extra were not installed: imports fail
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        preflight(["logger=tensorboard"])
    assert exit_.value.code == 2 and list(tmp_path.iterdir()) == []
    assert capsys.readouterr().err.strip() == (
        "error: logger.tensorboard (TensorBoardLogger) needs the optional tensorboard package: "
        "pip install -e '.[tensorboard]'"
    )


def test_wandb_gets_one_history_row_per_training_step(make_cfg, monkeypatch):
    # Lightning's train/loss and every monitor's metrics of a step arrive in separate calls; StepWandbLogger
    # sends them as one row. Steps: 0 (monitors only) and Lightning's logging steps 1, 3, ..., 9
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = make_cfg("logger=wandb", "model=rnn", "model.hidden_size=8", "trainer.max_steps=10")
    cfg.trainer.log_every_n_steps = 2
    train(cfg)
    (run_dir,) = Path(cfg.paths.output_dir, "wandb").glob("offline-run-*")
    rows = [r for r in offline_run(run_dir)["history"] if "grad/norm_total_preclip" in r or "train/loss" in r]
    steps = [int(r["trainer/global_step"]) for r in rows]
    assert steps == [0, 1, 3, 5, 7, 9]  # one row each, in order
    for row in rows[1:]:  # each holds Lightning's value and the monitors' together
        assert {"train/loss", "epoch", "grad/norm_total_preclip", "grad/layer/network.rnn"} <= set(row)
    assert "train/loss" not in rows[0] and "grad/norm_total_preclip" in rows[0]


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_csv_logger_writes_when_its_rows_or_seconds_are_due_and_at_the_end(tmp_path):
    # Lightning's logger connector calls save() after each of its logging calls: only a due one writes
    logger = StepCSVLogger(save_dir=str(tmp_path), name="csv", version="", flush_logs_every_n_steps=3, flush_secs=3600)
    path = Path(logger.experiment.metrics_file_path)
    for step in range(2):
        logger.log_metrics({"a": float(step)}, step)
        logger.save()
    assert not path.exists()  # two rows buffered, an hour not passed
    logger.log_metrics({"a": 2.0}, 2)  # the third row: written
    assert [r["step"] for r in _csv_rows(path)] == ["0", "1", "2"]
    logger.log_metrics({"a": 3.0}, 3)
    logger.log_metrics({"b": 4.0}, 3)  # the same step: merged into one row, still buffered
    logger.save()
    assert len(_csv_rows(path)) == 3
    logger.finalize("success")
    assert _csv_rows(path)[-1] == {"step": "3", "a": "3.0", "b": "4.0"}

    every_call = StepCSVLogger(save_dir=str(tmp_path), name="now", version="", flush_secs=0)
    every_call.log_metrics({"a": 1.0}, 0)
    assert len(_csv_rows(Path(every_call.experiment.metrics_file_path))) == 1  # flush_secs=0: each call writes


def test_csv_logger_refuses_a_negative_flush_interval(tmp_path):
    with pytest.raises(ValueError, match="flush_secs=-1 is not allowed"):
        StepCSVLogger(save_dir=str(tmp_path), flush_secs=-1)
