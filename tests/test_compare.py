"""compare.py on a real Hydra multirun: plots and a table whose numbers are the run files' numbers."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from src.analysis.compare import network_order
from src.analysis.runs import collect
from tests.conftest import REPO

SMALL = [
    "data.seq_len=10",
    "data.batch_size=16",
    "data.batches_per_epoch=10",
    "data.val_size=64",
    "data.test_size=64",
    "trainer.max_steps=12",
    "trainer.log_every_n_steps=3",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "test=false",
    "logger=csv",
    "callbacks=default",
    "callbacks.through_time.every_n_steps=6",
    "callbacks.histograms=null",
]


def compare_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "compare.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """One real multirun: an RNN and an MLP, two seeds each (runs of one name: the seed tells them apart)."""
    cwd = tmp_path_factory.mktemp("sweep")
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), "-m", "model=rnn,mlp", "seed=0,1", "clip=0.5", *SMALL],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep_dir,) = cwd.glob("multirun/*/*")
    return sweep_dir


@pytest.mark.timeout(600)
def test_compare_a_multirun_directory(sweep, tmp_path):
    out = tmp_path / "cmp"
    proc = compare_cli(str(sweep), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("loss.png", "grad_norm.png", "layers.png", "through_time.png", "table.md", "table.csv"):
        assert (out / name).stat().st_size > 0, name
    runs = collect([sweep])
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert len(rows) == len(runs) == 4
    markdown = (out / "table.md").read_text()
    for row, run in zip(rows, runs, strict=True):
        summary = json.loads((run.run_dir / "summary.json").read_text())
        hw = summary["hardware"]
        assert row["run"] == f"{summary['name']} seed={summary['seed']}"  # same names, told apart by the sweep
        assert row["status"] == summary["status"] == "completed"
        assert float(row["val/loss"]) == float(f"{summary['metrics']['val/loss']:.4g}")
        assert float(row["max grad norm"]) == float(f"{summary['max_grad_norm']:.4g}")
        assert row["clipped"] == f"{summary['steps_clipped'] / summary['optimizer_steps']:.0%}"
        assert float(row["steps/s"]) == float(f"{summary['steps_per_s']:.3g}")
        assert float(row["samples/s"]) == float(f"{summary['samples_per_s']:.3g}")
        assert row["hardware"] == f"cpu x1 {hw['precision']}" and row["device"] == hw["device_name"]
        assert "| " + " | ".join(row.values()) + " |" in markdown
        assert row["run"] in proc.stdout
    assert len({row["run"] for row in rows}) == 4


def test_layer_profile_is_in_network_order(sweep):
    rnn = next(run for run in collect([sweep]) if run.summary["choices"]["model"] == "rnn")
    profile = network_order(rnn, rnn.at_step("grad/layer/", 0))
    # the CSV sorts its columns (network.head first); the plot goes input side first, as the network does
    assert list(profile) == rnn.summary["layer_order"]
    assert list(profile) == ["network.rnn", "network.head"]  # one layer per module (src/grad_norms.py)


def test_missing_metrics_leave_their_plot_out(sweep, tmp_path):
    mlp_runs = [str(run.run_dir) for run in collect([sweep]) if run.summary["choices"]["model"] == "mlp"]
    proc = compare_cli(*mlp_runs, "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (tmp_path / "through_time.png").exists()  # an MLP has no through-time profile
    assert all((tmp_path / name).exists() for name in ("loss.png", "grad_norm.png", "layers.png", "table.csv"))


def test_compare_refuses_an_empty_directory(tmp_path):
    proc = compare_cli(str(tmp_path))
    assert proc.returncode == 2 and "no finished runs" in proc.stderr
