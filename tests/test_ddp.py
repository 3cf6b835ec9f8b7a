"""Real 2-process CPU DDP (gloo) and Hydra multiruns, through scripts/train.py as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from src.reproduce.runs import load_run
from tests.conftest import REPO
from tests.wandb_offline import offline_run

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


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("network.")}


@pytest.mark.timeout(600)
def test_ddp_equals_one_process_on_the_same_global_batch(tmp_path):
    # 2 ranks x 16 samples (one shard each) == 1 process x 32 samples in 2 shards: the same 32 sequences
    run_cli(tmp_path, *SMALL, "trainer=ddp_sim", "data.batch_size=16", "callbacks=default", "logger=csv")
    run_cli(tmp_path, *SMALL, "data.batch_size=32", "data.shards_per_device=2", "callbacks=default", "logger=csv")
    ddp_dir, single_dir = sorted(tmp_path.glob("outputs/*/*"), key=lambda p: p.stat().st_mtime)
    ddp, single = load_run(ddp_dir).series, load_run(single_dir).series
    for key in ("grad/norm_total_preclip", "grad/norm_total_postclip", "grad/layer/network.blocks.0.linear"):
        assert [s for s, _ in ddp[key]] == list(range(6))
        for (_, a), (_, b) in zip(ddp[key], single[key], strict=True):
            assert a == pytest.approx(b, rel=1e-5)
    for name, weight in final_weights(ddp_dir).items():
        assert torch.allclose(weight, final_weights(single_dir)[name], atol=1e-6), name
    ddp_summary = json.loads((ddp_dir / "summary.json").read_text())
    assert ddp_summary["hardware"]["world_size"] == 2 and ddp_summary["hardware"]["strategy"] == "DDPStrategy"


@pytest.mark.timeout(600)
def test_stateful_clipping_rule_is_identical_under_ddp(tmp_path):
    # ZClip's EMA state is computed from all-reduced gradients: 2 ranks keep the state one process keeps
    rule = ["clipping=zclip", "clipping.warmup_steps=2", "clipping.z_thresh=0.5", "logger=csv", "callbacks=default"]
    run_cli(tmp_path, *SMALL, *rule, "trainer=ddp_sim", "data.batch_size=16")
    run_cli(tmp_path, *SMALL, *rule, "data.batch_size=32", "data.shards_per_device=2")
    ddp_dir, single_dir = sorted(tmp_path.glob("outputs/*/*"), key=lambda p: p.stat().st_mtime)
    ddp, single = load_run(ddp_dir).series, load_run(single_dir).series
    assert len(ddp["clip/threshold"]) == 6 and any(v != float("inf") for _, v in ddp["clip/threshold"])
    for key in ("clip/threshold", "clip/ema_mean", "grad/norm_total_postclip"):
        for (_, a), (_, b) in zip(ddp[key], single[key], strict=True):
            assert a == pytest.approx(b, rel=1e-5), key
    ckpt = torch.load(ddp_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert int(ckpt["clipper.count"]) == 6


@pytest.mark.timeout(600)
def test_multirun_with_ddp_runs_each_job_once(tmp_path):
    run_cli(tmp_path, "-m", *SMALL, "trainer=ddp_sim", "callbacks=minimal", "logger=csv", "clip=null,1.0")
    sweeps = list(tmp_path.glob("multirun/*/*"))
    assert len(sweeps) == 1  # children did not start sweeps of their own
    summaries = sorted(sweeps[0].glob("*/summary.json"))
    assert len(summaries) == 2 and not (tmp_path / "outputs").exists()
    clips = sorted(str(json.loads(p.read_text())["clip"]) for p in summaries)
    assert clips == ["1.0", "None"]
    assert all(json.loads(p.read_text())["hardware"]["world_size"] == 2 for p in summaries)


def test_multirun_makes_one_wandb_run_per_job(tmp_path):
    run_cli(tmp_path, "-m", *SMALL, "callbacks=minimal", "logger=wandb", "model.depth=2,4")
    runs = sorted(tmp_path.glob("multirun/*/*/*/wandb/offline-run-*"))
    assert len(runs) == 2
    records = [offline_run(r) for r in runs]
    assert sorted(r["config"]["model"]["depth"] for r in records) == [2, 4]  # each its own resolved config
    assert records[0]["group"] == records[1]["group"] != ""  # one W&B group for the sweep
    for r in records:
        assert r["config"]["hardware"]["accelerator"] == "cpu" and r["config"]["hardware"]["world_size"] == 1
        assert r["job_type"] == "mlp" and r["tags"] == ["adding", "mlp", "clip_norm"]
        assert r["summary"]["status"] == "completed"
