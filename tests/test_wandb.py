"""Hydra multirun with the real wandb package, offline: one W&B run per job, each finished before the next."""

from __future__ import annotations

import pytest

from tests.cli_runs import SMALL, run_cli
from tests.wandb_runs import offline_run

HARDWARE_KEYS = {
    "accelerator",
    "device_name",
    "device_count",
    "num_nodes",
    "world_size",
    "strategy",
    "precision",
    "torch",
    "lightning",
    "cuda",
}


def start_and_runtime(run: dict) -> tuple[float, int]:
    """When the run started and how long it ran until ``wandb.finish()`` (its exit record; absent if never)."""
    assert run["start"] is not None and run["runtime"] is not None, f"{run} was not finished"
    assert run["exit_code"] == 0
    return run["start"], run["runtime"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_multirun_makes_one_finished_wandb_run_per_job(tmp_path):
    callbacks = ["callbacks=default", "callbacks.histograms=null", "callbacks.through_time=null"]
    sweep = ["-m", "trainer.precision=32-true,bf16-mixed"]
    run_cli(tmp_path, *sweep, *SMALL, *callbacks, "logger=wandb")
    (sweep_dir,) = tmp_path.glob("multirun/*/*")
    runs = sorted(sweep_dir.glob("*/wandb/offline-run-*"), key=lambda p: p.parent.parent.name)
    assert len(runs) == 2 and len({r.name for r in runs}) == 2  # without wandb.finish() job 1 reuses job 0's run
    records_ = [offline_run(r) for r in runs]
    # each run has its own resolved config and hardware keys
    assert [r["config"]["trainer"]["precision"] for r in records_] == ["32-true", "bf16-mixed"]
    assert [r["config"]["hardware"]["precision"] for r in records_] == ["32-true", "bf16-mixed"]
    for r in records_:
        assert set(r["config"]["hardware"]) >= HARDWARE_KEYS
        assert r["config"]["hardware"]["accelerator"] == "cpu" and r["config"]["hardware"]["world_size"] == 1
        assert r["config"]["model"]["depth"] == 3 and "${" not in repr(r["config"])  # resolved, not interpolations
        assert r["group"] == sweep_dir.name  # the sweep is the W&B group
        assert r["job_type"] == "mlp" and r["tags"] == ["adding", "mlp", "clip1.0"]
        assert {"throughput/steps_per_s", "throughput/samples_per_s", "grad/norm_total_preclip"} <= r["history_keys"]
        assert r["summary"]["status"] == "completed"
    (start0, runtime0), (start1, _) = (start_and_runtime(r) for r in records_)
    assert start0 + runtime0 <= start1 + 1.0  # job 0's run was finished before job 1's started (runtime in whole s)
