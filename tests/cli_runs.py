"""Run scripts/train.py as a user would (a subprocess, real Hydra, real Lightning launchers) in a test directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

# a 6-step MLP run logging every step: seconds per run, every code path of a real one
SMALL = [
    "model=mlp",
    "model.depth=3",
    "optimizer=sgd",
    "data.seq_len=10",
    "data.batches_per_epoch=10",
    "data.val_size=64",
    "data.test_size=64",
    "trainer.max_steps=6",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "test=false",
]


def run_cli(
    cwd: Path, *args: str, timeout: int = 400, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc
