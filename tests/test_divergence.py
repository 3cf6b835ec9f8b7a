"""Divergence is data: a run that blows up ends cleanly as `diverged`, with a diagnosis and finite checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from src.callbacks import DivergenceGuard
from src.diagnosis import diagnose
from src.models import GradLabModule
from src.train import build_network, train
from tests.conftest import REPO

# a deep relu MLP with the seed's N(0, 1) initialisation and a large learning rate: the first update explodes
EXPLODING = [
    "model=mlp",
    "model.depth=10",
    "model.init=normal",
    "model.init_std=1.0",
    "optimizer=sgd",
    "optimizer.lr=0.05",
    "trainer.max_steps=30",
]


def finite_checkpoints(run_dir: Path) -> list[Path]:
    files = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    for path in files:
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), path
    return files


def test_exploding_run_is_recorded_as_diverged_and_clipping_rescues_it(make_cfg):
    cfg = make_cfg(*EXPLODING, "clip=null")
    summary = train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert summary["status"] == "diverged" and summary["steps"] < 30
    assert summary["divergence"]["reason"] == "nonfinite_grad"
    assert summary["divergence"]["first_nonfinite_layer"].startswith("network.")
    recorded = json.loads((run_dir / "divergence.json").read_text())
    assert recorded["step"] == summary["divergence"]["step"] and len(recorded["history"]["grad_norm"]) >= 1
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "diverged"
    assert finite_checkpoints(run_dir)  # last.ckpt exists and holds the last finite model

    clipped = train(make_cfg(*EXPLODING, "clip=1.0"))
    assert clipped["status"] == "completed" and clipped["steps"] == 30
    assert clipped["steps_clipped"] == 30 and clipped["max_grad_norm"] > 1e6


def test_resume_from_the_last_checkpoint_of_a_diverged_run(make_cfg):
    # healthy until step 15, when a NaN gradient is applied (the poison runs after the guard): the weights turn
    # NaN, the guard stops the run at step 16, and the checkpoint callback refuses to save the NaN model
    poison = ["+callbacks.poison._target_=tests.test_divergence.Poison", "+callbacks.poison.step=15"]
    cfg = make_cfg("model=mlp", "trainer.max_steps=30", *poison)
    first = train(cfg)
    assert first["status"] == "diverged" and first["divergence"]["step"] == 16
    run_dir = Path(cfg.paths.output_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    assert last in finite_checkpoints(run_dir)
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 10  # the last finite save
    resumed = train(make_cfg("model=mlp", "trainer.max_steps=30", f"ckpt_path={last}"))
    assert resumed["status"] == "completed" and resumed["steps"] == 30
    assert resumed["optimizer_steps"] == 20  # it continued from step 10, not from scratch


class Poison(L.Callback):
    """Puts a NaN into one gradient at a chosen step, after DDP's all-reduce (so on this rank only)."""

    def __init__(self, step: int, rank: int = 0) -> None:
        self.step, self.rank = step, rank

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step == self.step and trainer.global_rank == self.rank:
            next(pl_module.parameters()).grad.view(-1)[0] = float("nan")


class Snapshot(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    @staticmethod
    def state(pl_module, optimizer) -> list[torch.Tensor]:
        params = [p.detach().clone() for p in pl_module.parameters()]
        opt = [v.clone() for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
        return params + opt

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            self.before = self.state(pl_module, trainer.optimizers[0])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step + 1:
            self.after = self.state(pl_module, trainer.optimizers[0])


def test_skip_leaves_weights_and_optimizer_state_bit_identical(make_cfg):
    cfg = make_cfg("model=mlp", "optimizer=adamw", "optimizer.weight_decay=0.1", "trainer.max_steps=8")
    dm = instantiate(cfg.data)
    module = GradLabModule(build_network(cfg.model, dm.task), dm.task, instantiate(cfg.optimizer))
    snap, guard = Snapshot(step=5), DivergenceGuard(on_nonfinite="skip")
    trainer = instantiate(cfg.trainer, callbacks=[snap, Poison(step=5), guard], logger=False)
    trainer.fit(module, datamodule=dm)
    assert guard.skipped_steps == 1 and not guard.diverged and trainer.global_step == 8
    assert len(snap.before) == len(snap.after) > 0
    assert all(torch.equal(a, b) for a, b in zip(snap.before, snap.after, strict=True))


def test_multirun_over_clip_runs_every_job(tmp_path):
    args = [*EXPLODING, "data.seq_len=10", "data.batch_size=16", "data.batches_per_epoch=10", "data.val_size=64"]
    args += ["data.test_size=64", "logger=csv", "callbacks=minimal", "trainer.enable_progress_bar=false"]
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), "-m", *args, "clip=null,1.0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summaries = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("multirun/*/*/*/summary.json"))]
    assert sorted(s["status"] for s in summaries) == ["completed", "diverged"]


DDP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import lightning as L
    import torch
    from torch import nn
    from src.callbacks import DivergenceGuard
    from tests.test_divergence import Poison

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
        def training_step(self, batch, batch_idx):
            return self.net(batch).pow(2).mean()
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    guard = DivergenceGuard(on_nonfinite="stop")
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=50, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[Poison(step=3, rank=1), guard], default_root_dir=sys.argv[1])
    trainer.fit(Tiny(), torch.utils.data.DataLoader(torch.randn(400, 4), batch_size=4))
    out = {"rank": trainer.global_rank, "step": trainer.global_step, "diverged": guard.diverged}
    with open(f"{sys.argv[1]}/rank{trainer.global_rank}.json", "w") as f:
        json.dump(out, f)
    """
)


@pytest.mark.timeout(180)
def test_nan_on_one_ddp_rank_stops_both_at_the_same_step(tmp_path):
    script = tmp_path / "ddp_nan.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # the script imports tests.test_divergence.Poison
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=150
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["step"] == ranks[1]["step"] == 4  # step 3 skipped and stopped on both ranks
    assert ranks[0]["diverged"] and ranks[1]["diverged"]


def test_diagnose_tells_a_diverged_run_from_a_healthy_one(make_cfg):
    bad = make_cfg(*EXPLODING, "clip=null", "callbacks=default", "callbacks.progress_bar=null")
    train(bad)
    good = make_cfg("model=lstm", "trainer.max_steps=40", "callbacks=default", "callbacks.progress_bar=null")
    train(good)
    bad_verdict = diagnose(Path(bad.paths.output_dir))
    good_verdict = diagnose(Path(good.paths.output_dir))
    assert bad_verdict.exploding and "loss or gradient went NaN/inf" in bad_verdict.symptoms
    assert "network.blocks.0.linear" in bad_verdict.evidence[0]
    assert not good_verdict.exploding and good_verdict.status == "completed"
    assert good_verdict.suggested_clip is not None and good_verdict.suggested_clip > 0
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "diagnose.py"), bad.paths.output_dir],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "status: diverged" in proc.stdout and "NaN/inf" in proc.stdout


@pytest.mark.parametrize(("on_spike", "status"), [("warn", "diverged"), ("skip", "completed")])
def test_skipping_spikes_rescues_a_run_with_bad_batches(make_cfg, on_spike, status):
    # every 37th batch has its inputs scaled by 1000 (a "bad batch"); unclipped momentum SGD blows up on it
    # unless the guard skips that step. Skipping does not rescue a run that is already running away (a high
    # learning rate): with the weights frozen, every later step is a spike too and 20 skips in a row stop it.
    summary = train(
        make_cfg(
            "model=mlp",
            "model.depth=4",
            "optimizer=sgd",
            "optimizer.momentum=0.9",
            "optimizer.lr=0.05",
            "clip=null",
            "data.corrupt_every=37",
            "trainer.max_steps=120",
            f"callbacks.divergence_guard.on_spike={on_spike}",
        )
    )
    assert summary["status"] == status
    if on_spike == "skip":
        assert summary["skipped_steps"] == 3 and all(e["reason"] == "grad_spike" for e in summary["guard_events"])
    else:
        assert summary["divergence"]["step"] == 37
