"""scripts/bench.py profile: who owns a sampled stack (worked examples), and a smoke run under py-spy."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from src.bench import profile

LOOP = "advance (lightning/pytorch/loops/training_epoch_loop.py:345)"
STEP = "training_step (src/models/module.py:128)"


@pytest.mark.parametrize(
    ("leaves", "category"),
    [
        ([STEP, "forward (torch/nn/modules/module.py:1751)"], "math"),  # torch's frames pass through to the caller
        ([STEP, "log (lightning/pytorch/core/module.py:444)", "f (lightning_utilities/core/x.py:9)"], "lightning"),
        (["hook (lightning/pytorch/trainer/call.py:228)", "on_before_optimizer_step (src/callbacks/grad_norm.py:100)",
          "step_grad_norms (src/grad_norms.py:245)", "norm (torch/functional.py:1)"], "gradlab callbacks"),
        (["emit (src/callbacks/schedule.py:74)", "log_metrics (lightning/pytorch/loggers/wandb.py:5)"], "loggers"),
        (["on_train_batch_end (lightning/pytorch/callbacks/progress/rich_progress.py:1)"], "progress bar"),
        (["on_train_batch_end (src/callbacks/progress_bar.py:40)", "on_train_batch_end (lightning/pytorch/"
          "callbacks/progress/rich_progress.py:1)"], "progress bar"),
        (["on_train_batch_end (src/callbacks/progress_bar.py:40)"], "progress bar"),  # gradlab's bar, not a monitor
        (["_run_backward (torch/autograd/graph.py:824)"], "math"),
        (["on_after_batch_transfer (src/data/datamodule.py:127)", "sample (src/data/adding.py:30)"], "data"),
        (["run (lightning/pytorch/loops/fit_loop.py:1)", "<built-in> (<frozen importlib._bootstrap>:1)"], "lightning"),
    ],
)  # fmt: skip
def test_a_sample_belongs_to_its_innermost_known_owner(leaves: list[str], category: str) -> None:
    assert profile.owner([LOOP, *leaves]) == category


def test_breakdown_counts_only_the_training_loop_and_leaves_validation_out() -> None:
    raw = "\n".join(
        [
            f"{LOOP};{STEP} 7",
            f"{LOOP};{STEP};log (lightning/pytorch/core/module.py:444) 2",
            f"{LOOP};run (lightning/pytorch/loops/evaluation_loop.py:1);{STEP} 50",  # validation inside fit
            f"main (scripts/train.py:1);{STEP} 40",  # outside the training loop (the test stage)
            f"{LOOP};on_before_optimizer_step (src/callbacks/divergence.py:152) 3",
        ]
    )
    categories, functions = profile.breakdown(raw)
    assert categories == {"math": 7, "lightning": 2, "gradlab callbacks": 3}
    assert functions["math: training_step (src/models/module.py)"] == 7
    assert functions["gradlab callbacks: on_before_optimizer_step (src/callbacks/divergence.py)"] == 3


def test_profile_bench_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        pytest.skip("py-spy is not installed (it is in the dev extra)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "profile.json"
    tiny = ["model.hidden_size=8", "data.seq_len=5", "data.batch_size=8", "logger=csv"]
    # enough samples that each part shows: 60 steps of ~1.1 ms at 100 Hz (a 2-core Intel Xeon) left Lightning none
    assert profile.main(["--steps", "600", "--rate", "200", "--out", str(out), "--overrides", *tiny]) == 0
    rows = {r["part"]: r for r in json.loads(out.read_text())["per_step"]}
    assert set(rows) == {*profile.CATEGORIES, "total (training loop)"}
    parts = [rows[c] for c in profile.CATEGORIES]
    assert sum(r["share"] for r in parts) == pytest.approx(1.0)
    assert sum(r["ms_per_step"] for r in parts) == pytest.approx(rows["total (training loop)"]["ms_per_step"])
    assert rows["math"]["ms_per_step"] > 0 and rows["lightning"]["ms_per_step"] > 0
