"""compare.py: plots and a table from run directories, with the table's numbers equal to the run files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from src.compare import collect
from src.train import train
from tests.conftest import REPO


def test_compare_a_sweep_directory(make_cfg, tmp_path):
    for clip in ("null", "0.5"):
        train(make_cfg("model=rnn", f"clip={clip}", "callbacks=default", "callbacks.progress_bar=null"))
    runs = collect([tmp_path])
    assert len(runs) == 2
    out = tmp_path / "cmp"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "compare.py"), str(tmp_path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("loss.png", "grad_norm.png", "layers.png", "through_time.png", "table.md", "table.csv"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader((out / "table.csv").open()))
    for row in rows:
        summary = json.loads(
            (Path(next(r.run_dir for r in runs if r.summary["name"] == row["run"])) / "summary.json").read_text()
        )
        assert row["status"] == summary["status"]
        assert float(row["val/loss"]) == float(f"{summary['metrics']['val/loss']:.4g}")
        assert float(row["max grad norm"]) == float(f"{summary['max_grad_norm']:.4g}")
        clipped = summary["steps_clipped"] / summary["optimizer_steps"]
        assert row["clipped"] == f"{clipped:.0%}"
    assert {r["clipped"] for r in rows if r["run"].endswith("noclip")} == {"0%"}


def test_compare_refuses_an_empty_directory(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "compare.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "no finished runs" in proc.stderr
