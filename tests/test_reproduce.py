"""Reproductions: every experiment config composes and validates; the seed's chain numbers come out exactly
through the real run path (train(cfg) -> telemetry CSV -> report); N(0,1) init explodes where He does not."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from src.analysis.report import build_report
from src.analysis.runs import Run, load_run
from src.config.preflight import check
from src.reproduce import EXPERIMENTS, command
from src.train import train
from tests.conftest import compose_cfg

# a real run at its real size, minus what the assertions do not read (progress bar, W&B, checkpoints)
LEAN = [
    "logger=csv",
    "callbacks.progress_bar=null",
    "callbacks.histograms=null",
    "callbacks.model_checkpoint=null",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def run(run_dir: Path, *overrides: str) -> Run:
    train(compose_cfg(run_dir, [*LEAN, *overrides], fast=False))
    loaded = load_run(run_dir)
    assert loaded is not None
    return loaded


@pytest.mark.slow  # every job of every experiment (~90 s); the fast suite validates one job each (below)
@pytest.mark.parametrize("name", [e.name for e in EXPERIMENTS])
def test_experiment_config_composes_and_validates(name: str) -> None:
    check(["-m", f"experiment={name}"])


@pytest.mark.slow  # make test-all; the fast suite keeps CI near 10 minutes
def test_quick_scale_overrides_validate() -> None:
    # one job per experiment: every job of every sweep is validated above, and the quick overrides are the same
    # for each job of an experiment (composing all ~250 jobs again took over a minute)
    for experiment in EXPERIMENTS:
        cmd = command(experiment, Path("/tmp/unused"), "quick", [])
        check([a for a in cmd[cmd.index("-m") + 1 :] if not a.startswith("hydra.")])


def test_seed_chain_numbers_through_the_run_path(tmp_path: Path) -> None:
    root = tmp_path / "root"
    chain5 = run(root / "seed_chain" / "0_chain-w2-n5", "experiment=seed_chain", "model.depth=5")
    # δ_l = ∂L/∂a_l = w^(n-l): the seed's 16, 8, 4, 2, 1, exactly
    assert list(chain5.at_step("delta/layer/", 0).values()) == [16.0, 8.0, 4.0, 2.0, 1.0]
    # every weight gradient is w^(n-1) = 16 (not the δ sequence)
    assert list(chain5.at_step("grad/layer/", 0).values()) == [16.0] * 5
    # one SGD step at lr 0.1: W_1 moves by 1.6, 80% of 2.0
    ratio = next(iter(chain5.at_step("update_ratio/layer/", 0).values()))
    after = next(iter(chain5.at_step("weight/layer/", 1).values()))
    assert math.isclose(ratio, 0.8, rel_tol=1e-6) and math.isclose(after, 0.4, rel_tol=1e-6)

    chain20 = run(root / "seed_chain" / "1_chain-w2-n20", "experiment=seed_chain", "model.depth=20")
    deltas = list(chain20.at_step("delta/layer/", 0).values())
    assert deltas[0] == 2.0**19 and deltas == [2.0 ** (20 - layer) for layer in range(1, 21)]

    report = build_report(root, tmp_path / "docs").read_text()
    assert "| 2 | 1 | 16 | 16 | 16 | 16 | 32 | 16 | 16 |" in report  # measured, exact, text, listing, code
    assert "5.242880e+05" in report and (tmp_path / "docs" / "img" / "seed_chain.png").exists()


def test_normal_init_gradient_explodes_against_he_at_depth_50(tmp_path: Path) -> None:
    shrink = ["experiment=init_study", "model.depth=50", "trainer.max_steps=1", "test=false", "data.val_size=64"]
    first = {}
    for init in ("normal", "he"):
        r = run(tmp_path / init, *shrink, "model.activation=tanh", f"model.init={init}")
        first[init] = next(iter(r.at_step("grad/layer/", 0).values()))
    assert math.isfinite(first["normal"]) and first["normal"] > 1e6 * first["he"]
    # relu with N(0,1): the forward pass itself overflows float32 (variance x 32 per layer) -> diverged at step 0
    relu = run(tmp_path / "relu", *shrink, "model.activation=relu", "model.init=normal")
    assert relu.status == "diverged" and relu.diverged_at == 0
