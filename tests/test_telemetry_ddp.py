"""2-process CPU DDP (gloo, Lightning's own launcher): the monitors log what one process logs on the same batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def run(out: Path, mode: str) -> dict[str, dict[str, float]]:
    out.mkdir()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "tests.ddp_telemetry_run", str(out), mode]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "logged.json").read_text())


@pytest.mark.slow  # make test-all; the fast suite keeps CI near 10 minutes
def test_ddp_norms_equal_the_single_process_run_on_the_same_global_batch(tmp_path: Path):
    ddp = run(tmp_path / "ddp", "ddp")
    single = run(tmp_path / "single", "single")
    # every rank computed the same pre-clip norms (the gradients were all-reduced before the hook)
    assert json.loads((tmp_path / "ddp" / "rank0.json").read_text()) == json.loads(
        (tmp_path / "ddp" / "rank1.json").read_text()
    )
    assert sorted(ddp) == sorted(single) == ["0", "1", "2", "3"]
    global_keys = ("grad/", "weight/", "update_ratio/", "rnn/sigma_max/")
    for step, logged in single.items():
        keys = {k for k in logged if k.startswith(global_keys)}
        assert keys == {k for k in ddp[step] if k.startswith(global_keys)}
        assert "grad/norm_total_preclip" in keys
        for key in keys:
            assert ddp[step][key] == pytest.approx(logged[key], rel=1e-5, abs=1e-7), (step, key)
    # rank 0 also ran the activation hooks and the unrolled pass alone, without hanging the other rank
    assert any(k.startswith("delta/layer/") for k in ddp["0"]) and "time_grad/t=0" in ddp["0"]
    assert ddp["0"]["grad/norm_total_postclip"] == pytest.approx(0.1, rel=1e-5)
    assert (tmp_path / "ddp" / "through_time.csv").exists()
