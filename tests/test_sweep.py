"""A real Optuna study on the flagship RNN (tiny sizes, sqlite storage, offline), and the pre-flight check of
the sweeper's search-space grammar."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf

from src.config.preflight import check
from src.config.validate import ConfigError
from src.sweep import objective
from tests.cli_runs import run_cli

TINY = [
    "model.hidden_size=8",
    "data.seq_len=8",
    "data.batch_size=16",
    "data.batches_per_epoch=10",
    "data.val_size=64",
    "data.test_size=64",
    "trainer.max_steps=20",
    "trainer.log_every_n_steps=10",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "test=false",
    "logger=csv",
    "callbacks=minimal",
]
# the experiment's own search space replaced on the command line (the command line wins over hydra.sweeper.params):
# unclipped or clipped SGD up to a learning rate of 1000, so that some trials diverge
SPACE = ["optimizer=sgd", "clip=null,1.0", "optimizer.lr=tag(log, interval(0.01, 1000.0))"]
N_TRIALS = 8


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, optuna.Study, str]:
    cwd = tmp_path_factory.mktemp("study")
    storage = f"sqlite:///{cwd / 'study.db'}"
    budget = [f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.sampler.n_startup_trials=4"]
    proc = run_cli(
        cwd, "-m", "experiment=rnn_clip_lr_search", *SPACE, *TINY, *budget, f"hydra.sweeper.storage={storage}"
    )
    (sweep_dir,) = cwd.glob("multirun/*/*")
    return sweep_dir, optuna.load_study(study_name="rnn_clip_lr_search", storage=storage), proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_study_survives_diverging_trials_and_ends_with_its_best(study):
    sweep_dir, stored, stdout = study
    trials = stored.trials
    assert len(trials) == N_TRIALS
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)  # no FAIL, none left RUNNING
    summaries = {
        int(OmegaConf.load(p.parent / ".hydra" / "hydra.yaml").hydra.job.num): json.loads(p.read_text())
        for p in sweep_dir.glob("*/summary.json")
    }
    assert sorted(summaries) == list(range(N_TRIALS))
    diverged = [t for t in trials if summaries[t.number]["status"] == "diverged"]
    assert diverged, "the search space reaches learning rates that diverge"
    for t in trials:  # each trial told the sweeper its final val/loss, +inf for a divergence
        s = summaries[t.number]
        expected = math.inf if s["status"] == "diverged" else s["metrics"]["val/loss"]
        assert t.value == expected
        assert s["config"]["optimizer"]["lr"] == t.params["optimizer.lr"]
        assert s["clip"] == (None if t.params["clip"] == "null" else float(t.params["clip"]))
        assert s["config"]["model"]["cell"] == "rnn"
    for t in diverged:
        assert summaries[t.number]["divergence_step"] is not None
    best = min((t for t in trials if math.isfinite(t.value)), key=lambda t: t.value)
    assert stored.best_trial.number == best.number

    results = OmegaConf.to_container(OmegaConf.load(sweep_dir / "optimization_results.yaml"))
    assert results["best_value"] == best.value and results["best_params"] == best.params
    assert results["best_job"] == best.number and results["n_trials"] == N_TRIALS
    assert results["n_diverged"] == len(diverged)
    assert results["best_run_dir"] == summaries[best.number]["run_dir"]
    rows = list(csv.DictReader((sweep_dir / "trials.csv").open()))
    assert [int(r["job"]) for r in rows] == list(range(N_TRIALS))
    for row, t in zip(rows, trials, strict=True):
        assert float(row["optimizer.lr"]) == t.params["optimizer.lr"]
        assert float(row["val/loss"]) == t.value and row["status"] == summaries[t.number]["status"]
    assert f"best trial: clip={best.params['clip']}" in stdout and results["best_run_dir"] in stdout


def test_objective_never_hands_nan_to_the_sweeper():
    completed = {"status": "completed", "metrics": {"val/loss": 0.25}}
    assert objective(completed) == 0.25
    assert objective({"status": "diverged", "metrics": {"val/loss": 0.1}}) == math.inf
    assert objective({"status": "completed", "metrics": {"val/loss": float("nan")}}) == math.inf  # no guard
    assert objective({"status": "completed", "metrics": {}}) == math.inf


def test_why_nan_must_not_reach_the_sweeper():
    """hydra-optuna-sweeper 1.3.0 tells a NaN as COMPLETE, and on the error tells FAIL with the same values:
    with optuna 2.10 both raise, so one NaN trial would end the sweep (the reason objective() maps it to inf)."""
    study = optuna.create_study()
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    with pytest.raises(ValueError, match="nan"):
        study.tell(trial, values=[float("nan")])
    with pytest.raises(ValueError, match="Values cannot be specified"):
        study.tell(trial, state=optuna.trial.TrialState.FAIL, values=[float("nan")])
    study.tell(trial, values=[math.inf])  # what a diverged trial reports instead
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["clip=interval(1.0, 0.1)"], "clip=interval(1.0, 0.1) is not allowed; expected interval(low, high) with low"),
        (["optimizer.lr=tag(log, interval(0, 0.1))"], "optimizer.lr=tag(log, interval(0, 0.1)) is not allowed; a log"),
        (["model.hidden_size=range(64, 16)"], "model.hidden_size=range(64, 16) is not allowed; the range is empty"),
        (["clip=interval(0.0, 5.0)"], "clip=0.0 is not allowed; expected a number > 0"),  # a bound composed
        (["model.hidden_size=range(0, 64, 16)"], "model.hidden_size=0 is not allowed; expected an integer >= 1"),
        (["optimizer.lr=tag(log, interval(0.001, 0.1))", "model=rnn,foo"], "model=foo is not a known option"),
    ],
)
def test_preflight_refuses_a_bad_search_space(args, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        check(["-m", "hydra/sweeper=optuna_tpe", *args])


def test_preflight_checks_the_search_space_at_its_bounds():
    check(["-m", "experiment=rnn_clip_lr_search"])  # the experiment's own space: both bounds of both intervals
    check(["-m", "hydra/sweeper=optuna_tpe", "model.hidden_size=range(8, 64, 8)", "optimizer=sgd,adam"])
    check(["-m", "hydra/sweeper=optuna_tpe", "model=rnn", "clipping=autoclip", "clipping.percentile=interval(1, 50)"])
    # Optuna samples the top of a range too: 3 shards do not divide a batch of 64; the basic sweeper runs 1 and 2
    check(["-m", "data.shards_per_device=range(1, 3)"])
    with pytest.raises(
        ConfigError, match=r"^data.batch_size=64 is not allowed; expected a multiple of data.shards_per_device=3"
    ):
        check(["-m", "hydra/sweeper=optuna_tpe", "data.shards_per_device=range(1, 3)"])


def test_the_basic_sweeper_cannot_run_an_interval():
    with pytest.raises(ConfigError, match=r"^clip=interval\(0.1, 1.0\) needs a search sweeper"):
        check(["-m", "clip=interval(0.1, 1.0)"])
