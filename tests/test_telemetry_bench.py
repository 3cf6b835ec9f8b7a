"""scripts/bench.py telemetry: runs end to end (a tiny budget: plumbing, not speed), and its per-monitor clock."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from src.bench._harness import StepTimer
from src.bench.telemetry import HookClock, Regression, batches, main, mlp

BURN_MS = 5.0


class Burner(L.Callback):
    """Spends BURN_MS of CPU time in every on_before_optimizer_step, none anywhere else."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        end = time.process_time() + BURN_MS / 1e3
        while time.process_time() < end:
            pass


@pytest.fixture
def one_thread():
    """As the benchmarks run (OMP_NUM_THREADS=1): the process's CPU clock then holds no OpenMP worker spinning
    on after a matmul, which would be charged to whichever hook runs next."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_hook_clock_charges_each_callback_its_own_cpu_time_over_the_timed_steps(one_thread):
    warmup, steps = 3, 6
    clock, timer = HookClock(warmup), StepTimer(warmup)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=warmup + steps,
        logger=False,
        callbacks=[clock, timer, clock.wrap(Burner()), clock.wrap(L.Callback())],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(
        Regression(mlp(), False),
        torch.utils.data.DataLoader(batches((4, 256), 4, torch.device("cpu")), batch_size=None),
    )
    assert timer.steps == steps
    assert set(clock.seconds) == {"Burner"}  # a callback that overrides no hook is not wrapped
    # the warm-up steps' burns are cleared: exactly `steps` burns of BURN_MS (plus the clock's own reads)
    assert BURN_MS * steps <= 1e3 * clock.seconds["Burner"] < BURN_MS * steps * 1.25


def test_bench_telemetry_smoke(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bench.json"
    variants = ("none", "norm_floor", "default", "watch_50")
    argv = ["--steps", "3", "--warmup", "1", "--repeats", "1", "--variants", *variants, "--in-run-steps", "16",
            "--block", "2"]  # fmt: skip
    assert main([*argv, "--out", str(out)]) == 0
    tables = json.loads(out.read_text())
    results = {f"{r['model']}/{r['variant']}": r for r in tables["runs"]}
    assert set(results) == {f"{m}/{v}" for m in ("mlp", "rnn") for v in variants}
    assert results["mlp/none"]["ratio"] == 1.0 and all(r["steps_per_s"] > 0 for r in results.values())
    monitors = {r["callback"]: r for r in tables["callbacks"] if (r["model"], r["variant"]) == ("mlp", "default")}
    added, clip = "added (hooks + clip - clip of none)", "clip (configure_gradient_clipping)"
    assert {"GradNormMonitor", "WeightMonitor", clip, added} <= set(monitors)
    assert all(r["clip"] == 1.0 for r in tables["runs"])  # clip=1.0 on both sides, the default run's
    none = {r["callback"]: r for r in tables["callbacks"] if (r["model"], r["variant"]) == ("mlp", "none")}
    assert set(none) == {clip} and none[clip]["cpu_ms_per_step"] > 0  # `none` clips too: it reads the norms
    assert monitors["GradNormMonitor"]["cpu_ms_per_step"] > 0 and abs(monitors[added]["share_of_cpu"]) < 1
    in_run = {r["model"]: r for r in tables["in_run"]}  # one gated run per model, clipped as the others
    assert set(in_run) == {"mlp", "rnn"} and all(r["clip"] == 1.0 for r in in_run.values())
    # 1 + 16 steps: batches 2..16 timed, in blocks of 2 from batch 1 (on: 1-2, off: 3-4, on: 5-6, ...): 4 pairs
    assert all(r["block_pairs"] == 4 and r["step_off_ms"] > 0 for r in in_run.values())


@pytest.mark.parametrize("argv", [["--in-run-steps", "3"], ["--block", "0"]])
def test_bench_telemetry_refuses_an_in_run_measurement_too_short_to_pair_blocks(argv, tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--steps", "1", "--repeats", "1", "--out", str(tmp_path / "bench.json")])
    assert exit_info.value.code == 2 and not (tmp_path / "bench.json").exists()
    assert "--in-run-steps" in capsys.readouterr().err
