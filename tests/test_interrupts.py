"""Interrupted runs: a kill during a checkpoint write, SIGTERM (preemption) and SLURM's requeue signal, each
followed by a resume that must end exactly where an uninterrupted run ends.

Kills and SIGTERM hit a real scripts/train.py subprocess from outside; the test-only parts of
tests/interrupt_helpers.py only hold the run at a known step so the signal lands there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.trainer.connectors.signal_connector import _HandlersCompose, _SignalConnector

from src.checkpoint_io import PARTIAL_PREFIX
from src.preemption import EXIT_INTERRUPTED
from src.train import train
from tests.conftest import REPO, compose_cfg
from tests.wandb_runs import offline_run, records

# 12 steps, validation and checkpoints every 4: a run small enough to start three times in a test
RUN = [
    "model=mlp",
    "model.depth=3",
    "optimizer=sgd",
    "optimizer.momentum=0.9",
    "data.seq_len=10",
    "data.batch_size=16",
    "data.batches_per_epoch=4",
    "data.val_size=64",
    "data.test_size=64",
    "trainer.max_steps=12",
    "trainer.log_every_n_steps=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks=minimal",
    "logger=csv",
    "test=false",
]


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict, dict[str, torch.Tensor]]:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    summary = train(compose_cfg(run_dir, RUN, fast=False))
    assert summary["status"] == "completed" and summary["steps"] == 12
    return summary, weights(run_dir / "checkpoints" / "last.ckpt")


def start(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}  # the run imports tests.interrupt_helpers
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())  # the same float reductions as this process
    return subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "train.py"), *RUN, *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(marker: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before the marker: {proc.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, "the run never reached the marker"
        time.sleep(0.05)


def resume_and_compare(tmp_path: Path, last: Path, uninterrupted: tuple[dict, dict[str, torch.Tensor]]) -> dict:
    resumed_dir = tmp_path / "resumed"
    resumed = train(compose_cfg(resumed_dir, [*RUN, f"ckpt_path={last}"], fast=False))
    reference, reference_weights = uninterrupted
    start = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert resumed["status"] == "completed" and resumed["steps"] == 12
    assert resumed["optimizer_steps"] == 12 - start  # it continued from the checkpoint, not from scratch
    final = weights(resumed_dir / "checkpoints" / "last.ckpt")
    assert final.keys() == reference_weights.keys()
    assert all(torch.equal(final[k], reference_weights[k]) for k in final)  # bit-identical, not close
    assert resumed["metrics"]["val/loss"] == reference["metrics"]["val/loss"]
    return resumed


@pytest.mark.timeout(300)
def test_sigkill_during_a_checkpoint_write_leaves_the_old_file_and_resumes_identically(tmp_path, uninterrupted):
    # the write of last.ckpt at step 8 stops half-way; the system temp dir is on another filesystem where there
    # is one (/dev/shm), which is where Lightning's own writer would have put its temporary file
    marker = tmp_path / "half-written"
    plugin = f"trainer.plugins=[{{_target_:tests.interrupt_helpers.SlowCheckpointIO,step:8,marker:'{marker}'}}]"
    shm = Path("/dev/shm")
    other_fs = shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev
    proc = start(tmp_path, plugin, env={"TMPDIR": str(shm)} if other_fs else None)
    wait_for(marker, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    (run_dir,) = tmp_path.glob("outputs/*/*")
    checkpoints = run_dir / "checkpoints"
    (partial,) = checkpoints.glob(f"{PARTIAL_PREFIX}*.tmp")  # the write in flight: beside the target
    assert partial.stat().st_size == int(marker.read_text()) > 0
    last = checkpoints / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 4  # the old, complete file
    assert not (run_dir / "summary.json").exists()
    resume_and_compare(tmp_path, last, uninterrupted)


@pytest.mark.slow  # the fast suite keeps SIGTERM during the final evaluation and the SLURM requeue signal
@pytest.mark.timeout(300)
def test_sigterm_finishes_the_step_records_interrupted_and_resumes_identically(tmp_path, uninterrupted):
    marker = tmp_path / "at-step-6"
    hold = ["+callbacks.hold._target_=tests.interrupt_helpers.WaitForSignal", "+callbacks.hold.step=6"]
    proc = start(tmp_path, *hold, f"+callbacks.hold.marker={marker}", "logger=wandb", env={"WANDB_MODE": "offline"})
    wait_for(marker, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED == 143, stderr[-3000:]
    (run_dir,) = tmp_path.glob("outputs/*/*")
    summary = json.loads((run_dir / "summary.json").read_text())
    last = run_dir / "checkpoints" / "last.ckpt"
    assert summary["status"] == "interrupted" and summary["steps"] == 6 and summary["resume_from"] == str(last)
    assert "test/loss" not in summary["metrics"]  # no final evaluation of an unfinished run
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 6  # mid-epoch, this step
    # the W&B run: summary says interrupted, marked preempting, finished with the same exit code
    (wandb_dir,) = run_dir.glob("wandb/offline-run-*")
    wandb_run = offline_run(wandb_dir)
    assert wandb_run["summary"]["status"] == "interrupted" and wandb_run["exit_code"] == 143
    assert "preempting" in {r["type"] for r in records(wandb_dir)}
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    resume_and_compare(tmp_path, last, uninterrupted)
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == before  # the old run untouched


SLURM_ENV = {  # one task of `srun` on one node
    "SLURM_NTASKS": "1",
    "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_JOB_NAME": "train",
    "SLURM_JOB_ID": "4242",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "SLURM_NODELIST": "localhost",
}
MULTINODE_ON_ONE_CPU = ["trainer=multinode", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.num_nodes=1"]


def test_multinode_keeps_lightnings_slurm_handlers(tmp_path, monkeypatch):
    from hydra.utils import instantiate

    for key, value in SLURM_ENV.items():
        monkeypatch.setenv(key, value)
    cfg = compose_cfg(tmp_path / "run", MULTINODE_ON_ONE_CPU, fast=False)
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    trainer = instantiate(cfg.trainer, logger=False, callbacks=callbacks)
    connector: _SignalConnector = trainer._signal_connector
    connector.register_signal_handlers()  # what fit() does first
    try:
        usr1, term = signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGTERM)
        assert isinstance(usr1, _HandlersCompose) and isinstance(term, _HandlersCompose)
        assert connector._slurm_sigusr_handler_fn in usr1.signal_handlers  # save hpc_ckpt + scontrol requeue
        assert connector._sigterm_notifier_fn in term.signal_handlers
    finally:
        connector.teardown()
    # the hpc checkpoint goes to a directory fixed by the job id, not to this start's new run directory
    assert trainer.default_root_dir == "outputs/slurm-requeue/4242"


@pytest.mark.timeout(300)
def test_slurm_requeue_signal_saves_hpc_checkpoint_and_the_requeued_job_resumes(tmp_path, monkeypatch, uninterrupted):
    # SLURM's --signal=USR1@90, then SIGTERM at the time limit: real signals through Lightning's own handlers.
    # `scontrol` is a stand-in that records the requeue request (nothing here may requeue a real job)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    (bin_dir / "scontrol").chmod(0o755)
    for key, value in {**SLURM_ENV, "PATH": f"{bin_dir}:{os.environ['PATH']}"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    signals = ["+callbacks.signals._target_=tests.interrupt_helpers.SendSignals", "+callbacks.signals.step=6"]
    signals.append("+callbacks.signals.signals=[SIGUSR1,SIGTERM]")
    first = train(compose_cfg(tmp_path / "start1", [*RUN, *MULTINODE_ON_ONE_CPU, *signals], fast=False))
    assert first["status"] == "interrupted" and first["steps"] == 6
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    (hpc,) = (tmp_path / "outputs" / "slurm-requeue" / "4242").glob("hpc_ckpt_*.ckpt")
    assert torch.load(hpc, map_location="cpu", weights_only=True)["global_step"] == 6
    # the requeued job: the same command line and job id, a new run directory, no ckpt_path
    second_dir = tmp_path / "start2"
    second = train(compose_cfg(second_dir, [*RUN, *MULTINODE_ON_ONE_CPU], fast=False))
    assert second["status"] == "completed" and second["steps"] == 12
    assert second["optimizer_steps"] == 6  # Lightning found the hpc checkpoint and continued from step 6
    final = weights(second_dir / "checkpoints" / "last.ckpt")
    assert all(torch.equal(final[k], v) for k, v in uninterrupted[1].items())


def test_sigterm_during_the_final_evaluation_is_interrupted_and_the_resume_evaluates(tmp_path):
    # a real SIGTERM, sent by the process to itself, handled by the handler Lightning installs in validate()
    signal_ = ["+callbacks.term._target_=tests.interrupt_helpers.SignalInFinalValidation", "data.eval_batch_size=32"]
    first = train(compose_cfg(tmp_path / "first", [*RUN, *signal_, "test=true"], fast=False))
    assert first["status"] == "interrupted" and first["steps"] == 12 and "test/loss" not in first["metrics"]
    assert first["resume_from"] == str(tmp_path / "first" / "checkpoints" / "last.ckpt")
    resume = [*RUN, "test=true", f"ckpt_path={first['resume_from']}"]
    resumed = train(compose_cfg(tmp_path / "resumed", resume, fast=False))
    assert resumed["status"] == "completed" and resumed["optimizer_steps"] == 0 and "test/loss" in resumed["metrics"]


def test_last_checkpoint_holds_the_final_step_between_validations(tmp_path):
    # max_steps 10 with validation every 4 steps: Lightning alone leaves last.ckpt at step 8
    summary = train(compose_cfg(tmp_path, [*RUN, "trainer.max_steps=10"], fast=False))
    assert summary["steps"] == 10
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_under_ddp_stops_both_ranks_at_the_same_step(tmp_path):
    # rank 0 is held between its backward and its optimizer update while rank 1 runs on into the guard's
    # all-reduce and waits there; SIGTERM then reaches rank 0. Lightning's own handler broadcasts from inside
    # the signal handler at that moment and the job hangs (callbacks.preemption_sync=null); PreemptionSync
    # makes both ranks stop after the same step
    marker = tmp_path / "rank0-after-backward"
    hold = ["+callbacks.hold._target_=tests.interrupt_helpers.WaitForSignal", "+callbacks.hold.step=6"]
    hold += ["+callbacks.hold.rank=0", "+callbacks.hold.after_backward=true", f"+callbacks.hold.marker={marker}"]
    proc = start(tmp_path, "trainer=ddp_sim", *hold)
    wait_for(marker, proc)
    time.sleep(1)  # rank 1 reaches its all-reduce
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, stderr[-3000:]
    (run_dir,) = tmp_path.glob("outputs/*/*")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["steps"] == 7  # step 6 finished on both ranks
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 7
