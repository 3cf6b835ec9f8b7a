"""make gpu-check without a GPU: its paper runs compose as real runs, its verdicts, its dry run of the tests part."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from src.config.compose import compose_run
from src.config.validate import validate
from src.gpu_check import main as gpu_check
from src.gpu_check import paper
from tests.conftest import REPO

NO_CUDA = "(torch.cuda.is_available() is False)"


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize("spec", paper.RUNS, ids=lambda s: s.name)
def test_paper_runs_are_valid_runs_with_the_papers_settings(tmp_path: Path, spec: paper.PaperRun, dry_run: bool):
    overrides = spec.overrides(tmp_path / spec.name, max_time_s=3723, dry_run=dry_run)
    cfg = compose_run([o for o in overrides if not o.startswith("hydra.")], tmp_path / spec.name)
    validate(cfg)  # a key renamed elsewhere would fail here, not on the GPU
    assert cfg.model.cell == spec.cell and cfg.model.num_layers == 1 and cfg.data.task == spec.task
    assert (cfg.clip, cfg.clip_algorithm, cfg.optimizer._target_) == (1.0, "value", "torch.optim.RMSprop")
    assert (cfg.optimizer.lr, cfg.optimizer.alpha, cfg.trainer.max_time) == (0.001, 0.9, "00:01:02:03")
    size = (cfg.model.hidden_size, cfg.data.seq_len, cfg.data.batch_size, cfg.trainer.max_steps)
    if dry_run:
        assert size == (8, 10, 4, 4) and cfg.trainer.accelerator == "cpu"
    else:
        assert size == (spec.hidden, spec.seq_len, spec.batch, 20_000) and cfg.trainer.accelerator == "gpu"
    assert cfg.model.get("nonlinearity", "tanh") == "tanh" and list(cfg.logger) == ["csv"]
    assert (cfg.model.init, cfg.model.recurrent_init, cfg.model.recurrent_gain) == ("xavier", "orthogonal", 1.0)


def test_verdicts_against_the_published_statements():
    lstm, rnn = paper.RUNS[0], paper.RUNS[1]  # "beats the baseline" and "does not"
    assert paper.verdict(lstm, beats=True, steps=20_000, status="completed") == "as published"
    assert paper.verdict(lstm, beats=True, steps=7_000, status="stopped_early") == "as published"
    assert paper.verdict(lstm, beats=False, steps=7_000, status="stopped_early") == "not yet (7000 of 20000 steps)"
    assert paper.verdict(lstm, beats=False, steps=20_000, status="completed") == "differs"
    assert paper.verdict(rnn, beats=False, steps=20_000, status="completed") == "as published"
    assert paper.verdict(rnn, beats=False, steps=7_000, status="stopped_early") == "as published so far"
    assert paper.verdict(rnn, beats=True, steps=7_000, status="stopped_early") == "differs"
    assert paper.verdict(lstm, beats=False, steps=300, status="diverged") == "differs (diverged)"


@pytest.mark.slow  # make test-all; the fast suite keeps CI near 10 minutes
def test_dry_run_reports_every_gpu_check_as_skipped(tmp_path: Path):
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "scripts" / "gpu_check.py"), "--dry-run", "--only", "tests"]
    proc = subprocess.run(
        [*cmd, "--out", str(out), "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads((out / "gpu_check.json").read_text())["rows"]
    tests = {check: result for part, check, result, _ in rows if part == "tests"}
    assert set(tests) == set(gpu_check.TEST_CHECKS.values())  # every gpu test is one of the table's checks
    assert all(result.startswith("skipped") for result in tests.values())
    assert proc.stdout.splitlines()[-1].startswith("total") and (out / "table.txt").read_text() in proc.stdout + "\n"
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.log", "pytest.xml", "table.txt"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a usage error only where no GPU is visible")
@pytest.mark.parametrize("bench", ["loop", "telemetry", "guard"])
def test_bench_on_cuda_without_a_gpu_is_a_usage_error(bench: str, capsys: pytest.CaptureFixture[str]):
    module = importlib.import_module(f"src.bench.{bench}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--device", "cuda"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("no CUDA device is visible " + NO_CUDA)
