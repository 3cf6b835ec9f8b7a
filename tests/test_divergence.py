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
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import nn

from src.analysis.diagnosis import diagnose, report
from src.analysis.runs import load_run
from src.build import build_network
from src.callbacks import DivergenceGuard, FiniteModelCheckpoint
from src.console import guard_lines
from src.models import GradLabModule
from src.train import train
from tests.conftest import REPO
from tests.wandb_runs import offline_run

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


def test_exploding_run_is_recorded_as_diverged_and_clipping_rescues_it(make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = make_cfg(*EXPLODING, "clip=null", "logger=wandb")
    summary = train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    wandb_summary = offline_run(next((run_dir / "wandb").glob("offline-run-*")))["summary"]
    assert wandb_summary["status"] == "diverged" and wandb_summary["divergence_step"] == 1
    assert summary["status"] == "diverged" and summary["steps"] < 30
    # step 0's update (gradient norm ~1e16) makes step 1's forward pass overflow: the loss itself is NaN
    assert summary["divergence"]["reason"] == "nonfinite_loss" and summary["divergence"]["loss_nonfinite"]
    assert summary["divergence_step"] == summary["divergence"]["step"] == 1
    assert summary["divergence"]["first_nonfinite_layer"] == "network.blocks.0.linear"  # network order
    assert summary["divergence"]["largest_grad_layer"].startswith("network.")  # at step 0, before the NaN
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


@pytest.mark.slow  # two jobs through Hydra's launcher: ~40 s on the 2-core machine
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
    from pathlib import Path
    import lightning as L
    import torch
    from src.callbacks import DivergenceGuard, FiniteModelCheckpoint
    from tests.test_divergence import Poison, Tiny, tiny_loader

    out, action = Path(sys.argv[1]), sys.argv[2]
    guard = DivergenceGuard(on_nonfinite=action)
    callbacks = [Poison(step=3, rank=1), guard]
    if action == "warn":  # a save every step: rank 1 holds NaN weights one step before rank 0 does
        callbacks.append(FiniteModelCheckpoint(dirpath=out / "checkpoints", every_n_train_steps=1, save_last=True))
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=8, logger=False,
                        enable_checkpointing=action == "warn", enable_progress_bar=False,
                        enable_model_summary=False, callbacks=callbacks, default_root_dir=out)
    trainer.fit(Tiny(), tiny_loader())
    result = {"rank": trainer.global_rank, "step": trainer.global_step, "diverged": guard.diverged}
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(result))
    torch.distributed.destroy_process_group()  # else gloo's threads can abort the interpreter's exit
    """
)


def run_ddp(tmp_path: Path, action: str) -> list[dict]:
    script = tmp_path / "ddp_nan.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # the script imports tests.test_divergence
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), action],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.timeout(180)
def test_nan_on_one_ddp_rank_stops_both_at_the_same_step(tmp_path):
    ranks = run_ddp(tmp_path, "stop")
    assert ranks[0]["step"] == ranks[1]["step"] == 4  # step 3 skipped and stopped on both ranks
    assert ranks[0]["diverged"] and ranks[1]["diverged"]


@pytest.mark.slow  # a second 2-process launch (~20 s)
@pytest.mark.timeout(180)
def test_ddp_checkpoint_refusal_is_collective(tmp_path):
    # warn: rank 1 applies its NaN at step 3 and holds NaN weights while rank 0's are still finite; a save
    # refused on rank 1 only would leave rank 0 alone in save_checkpoint's barrier
    ranks = run_ddp(tmp_path, "warn")
    assert ranks[0]["step"] == ranks[1]["step"] == 8 and ranks[0]["diverged"] and ranks[1]["diverged"]
    files = finite_checkpoints(tmp_path)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert files and last["global_step"] == 3  # the save after step 2; from step 3 on some rank holds NaN


def test_diagnose_tells_a_diverged_run_from_a_healthy_one(make_cfg):
    logged = ["callbacks=default", "callbacks.progress_bar=null", "trainer.log_every_n_steps=2"]
    bad = make_cfg(*EXPLODING, "clip=null", *logged)
    train(bad)
    good = make_cfg("model=mlp", "trainer.max_steps=40", *logged)
    train(good)
    bad_verdict = diagnose(Path(bad.paths.output_dir))
    good_verdict = diagnose(Path(good.paths.output_dir))
    assert bad_verdict.status == "diverged"
    assert bad_verdict.symptoms[0] == "loss or gradient went NaN/inf"
    # the layer named is the largest gradient at step 0: the head, fed the 1e7-sized activations of 10 N(0,1) layers
    evidence = bad_verdict.evidence[0]
    assert "nonfinite_loss at step 1" in evidence and "at step 0: network.head" in evidence
    assert "gradient norm far above ~1000" in bad_verdict.symptoms  # step 0's norm is ~1e16
    assert bad_verdict.suggested_clip is None  # one finite step before the NaN is no distribution
    # finite at step 0, NaN after the first update: the updates were too large, clipping is the fix
    assert bad_verdict.cause == "updates" and "clip the gradients" in bad_verdict.advice
    assert good_verdict.cause is None
    assert not good_verdict.exploding and good_verdict.status == "completed"
    # 21 logged norms (step 0, then every 2nd of 40 steps: 1, 3, ..., 39): the suggestion is their 90th percentile
    good_norms = sorted(v for _, v in load_run(Path(good.paths.output_dir)).curve("grad/norm_total_preclip"))
    assert len(good_norms) == 21 and good_verdict.suggested_clip == good_norms[int(0.9 * 21)]
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "diagnose.py"), bad.paths.output_dir, good.paths.output_dir],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "status: diverged" in proc.stdout and "NaN/inf" in proc.stdout
    assert "likely cause (updates)" in proc.stdout
    assert "status: completed" in proc.stdout and "no symptom of exploding gradients" in proc.stdout


@pytest.mark.parametrize(("on_spike", "status"), [("warn", "diverged"), ("skip", "completed")])
def test_skipping_spikes_rescues_a_run_with_bad_batches(make_cfg, on_spike, status):
    # every 37th batch (steps 36, 73, 110) has its inputs scaled by 1000; unclipped momentum SGD blows up on it
    # unless the guard skips that step. Skipping does not rescue a run that runs away on its own (README).
    cfg = make_cfg(
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
    summary = train(cfg)
    verdict = diagnose(Path(cfg.paths.output_dir))
    assert summary["status"] == verdict.status == status
    assert verdict.cause == "spike"  # the fix is skipping the bad batches, not clipping every step
    lines = guard_lines(summary)
    spike_line = next(line for line in lines if "gradient spike" in line)
    largest = max(e["ratio"] for e in summary["guard_events"] if e["reason"] == "grad_spike")
    assert largest > 10 and f"largest {largest:.3g}x at step" in spike_line and "> 10x the recent median" in spike_line
    events = [(e["step"], e["reason"]) for e in summary["guard_events"]]
    if on_spike == "skip":
        assert summary["skipped_steps"] == 3 and events == [(36, "grad_spike"), (73, "grad_spike"), (110, "grad_spike")]
        assert "3 gradient spikes" in spike_line and "those steps skipped (on_spike=skip)" in spike_line
        assert summary["steps_clipped"] == 0  # a skipped step (gradients removed) is not a clipped one
        assert "they were skipped" in verdict.advice
        assert verdict.symptoms == ["gradient norm spikes"] and "3 spike(s) at steps 36, 73, 110" in verdict.evidence[0]
        # 25 logged norms (step 0, then every 5th: 4, 9, ..., 119), none at a spike step (36, 73, 110)
        assert verdict.suggested_clip is not None and "25 logged" in verdict.clip_rationale
    else:
        assert events == [(36, "grad_spike"), (37, "nonfinite_grad")] and summary["divergence"]["step"] == 37
        assert "1 gradient spike >" in spike_line and "no action, logged only (on_spike=warn)" in spike_line
        assert "  divergence guard: nonfinite grad at step 37; the run stopped (on_nonfinite=stop)" in lines
        assert "spike at step 36, non-finite at step 37" in verdict.advice
        assert verdict.symptoms[:2] == [
            "loss or gradient went NaN/inf",
            "gradient norm spikes",
        ]
        layer = summary["divergence"]["spike_layer"]  # the layer that grew most at step 36, before the NaN
        assert (
            layer.startswith("network.")
            and f"{layer} (x" in verdict.evidence[0]
            and "at step 36" in verdict.evidence[0]
        )
        assert verdict.suggested_clip is not None and "36 recorded" in verdict.clip_rationale  # steps 0..35


def test_diagnose_blames_the_initialisation_for_a_forward_overflow(make_cfg):
    # 30 N(0, 1) relu layers overflow float32 in the first forward pass: clipping (on here) cannot help
    cfg = make_cfg("model=mlp", "model.depth=30", "model.init=normal", "model.init_std=1.0", "clip=1.0")
    summary = train(cfg)
    verdict = diagnose(Path(cfg.paths.output_dir))
    assert summary["status"] == "diverged" and summary["divergence"]["step"] == 0
    assert summary["divergence"]["reason"] == "nonfinite_loss"
    assert verdict.cause == "init" and "initialisation or the architecture" in verdict.advice
    assert verdict.suggested_clip is None and "before any update" in verdict.clip_rationale
    assert "clip=1.0" not in report(verdict)


class Tiny(L.LightningModule):
    """A two-layer tanh net on random inputs, for guard tests that need no gradlab model."""

    def __init__(self, optimizer: str = "sgd", loss_offset: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
        self.optimizer, self.loss_offset = optimizer, loss_offset

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.log("score", float(self.global_step))  # improves every step: a monitor that always wants a save
        return (self.net(batch) - 1).pow(2).mean() + self.loss_offset

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer == "adamw":
            return torch.optim.AdamW(self.parameters(), lr=0.01, weight_decay=0.1)
        return torch.optim.SGD(self.parameters(), lr=0.01)


def tiny_loader(samples: int = 400) -> torch.utils.data.DataLoader:
    inputs = torch.randn(samples, 4, generator=torch.Generator().manual_seed(0))
    return torch.utils.data.DataLoader(inputs, batch_size=4)


def tiny_trainer(tmp_path: Path, callbacks: list, **kwargs) -> L.Trainer:
    options = {"max_steps": 30, "enable_checkpointing": False, **kwargs}
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        default_root_dir=tmp_path,
        **options,
    )


class Amplify(L.Callback):
    """Multiplies one layer's gradient at one step: a spike in that layer only."""

    def __init__(self, step: int, layer: int, factor: float = 1e3) -> None:
        self.step, self.layer, self.factor = step, layer, factor

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step == self.step:
            for p in pl_module.net[self.layer].parameters():
                p.grad.mul_(self.factor)


def test_spike_stop_names_the_layer_that_spiked(tmp_path):
    guard = DivergenceGuard(on_spike="stop", warmup_steps=10)
    trainer = tiny_trainer(tmp_path, [Amplify(step=15, layer=2), guard])
    trainer.fit(Tiny(), tiny_loader())
    assert trainer.global_step == 16 and guard.skipped_steps == 1
    div = guard.divergence
    assert div is not None and div["reason"] == "grad_spike" and div["step"] == 15
    assert div["spike_layer"] == "net.2" and 500 < div["spike_ratio_vs_median"] < 2000
    assert not div["loss_nonfinite"] and div["first_nonfinite_layer"] is None
    recorded = json.loads((tmp_path / "divergence.json").read_text())
    assert recorded["history"]["step"] == list(range(16)) and set(recorded["history"]["layers"]) == {"net.0", "net.2"}
    assert recorded["clip"] is None


def test_negative_losses_are_no_spikes(tmp_path):
    # a constant offset changes no gradient; 10 x a negative median would flag every step of a healthy run
    guard = DivergenceGuard(on_spike="stop", warmup_steps=5)
    trainer = tiny_trainer(tmp_path, [guard])
    trainer.fit(Tiny(loss_offset=-100.0), tiny_loader())
    assert trainer.global_step == 30 and guard.events == []


def test_stop_is_final_even_before_min_steps(tmp_path):
    # Lightning honours should_stop only after min_steps (and then min_epochs=1, here 10 batches): the steps
    # it still runs must change nothing
    module, snap = Tiny("adamw"), Snapshot(step=3)
    guard = DivergenceGuard(on_nonfinite="stop")
    trainer = tiny_trainer(tmp_path, [snap, Poison(step=3), guard], min_steps=10)
    trainer.fit(module, tiny_loader(samples=40))
    assert trainer.global_step == 10 and guard.diverged and guard.skipped_steps == 7
    after = Snapshot.state(module, trainer.optimizers[0])
    assert all(torch.equal(a, b) for a, b in zip(snap.before, after, strict=True))


def test_nan_weights_are_never_saved_and_best_stays_finite(tmp_path):
    # warn lets the NaN step through; the monitored score improves every step, so only the finiteness check
    # stands between the NaN model and best/last
    ckpt = FiniteModelCheckpoint(
        dirpath=tmp_path / "checkpoints", monitor="score", mode="max", save_top_k=1, save_last=True,
        every_n_train_steps=1,
    )  # fmt: skip
    guard = DivergenceGuard(on_nonfinite="warn")
    trainer = tiny_trainer(tmp_path, [Poison(step=5), guard, ckpt], max_steps=10, enable_checkpointing=True)
    trainer.fit(Tiny(), tiny_loader())
    assert guard.diverged and trainer.global_step == 10
    assert len(finite_checkpoints(tmp_path)) == 2  # best and last, both finite
    best = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=False)
    assert best["global_step"] == 5 and ckpt.best_model_score == 4  # the save after step 4, the last finite one
    assert torch.load(ckpt.last_model_path, map_location="cpu", weights_only=False)["global_step"] == 5


class Overflow(L.Callback):
    """An inf gradient at every step: what a genuinely exploding fp16 run keeps giving GradScaler."""

    def on_after_backward(self, trainer, pl_module) -> None:
        next(pl_module.parameters()).grad.view(-1)[0] = float("inf")


@pytest.mark.parametrize("genuine", [False, True])
def test_amp_overflow_is_left_to_grad_scaler(tmp_path, genuine):
    # 16-mixed on CPU through Lightning's MixedPrecision plugin. A scale of 2^24 overflows fp16 for the first
    # steps until GradScaler has halved it enough: routine, not divergence. An inf on every step is divergence
    # once max_consecutive_skips scaler skips come in a row.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24, growth_interval=1000)
    guard = DivergenceGuard(max_consecutive_skips=12)
    callbacks = [Overflow(), guard] if genuine else [guard]
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    module = Tiny()
    before = [p.detach().clone() for p in module.parameters()]
    trainer = tiny_trainer(tmp_path, callbacks, plugins=[plugin], max_steps=20)
    trainer.fit(module, tiny_loader())
    if genuine:
        assert guard.diverged and guard.divergence["reason"] == "amp_overflow (12 consecutive)"
        assert trainer.global_step == 12 and scaler.get_scale() == 2.0**12
        assert all(torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))
    else:
        assert scaler.get_scale() < 2.0**24  # the scaler did skip steps
        assert not guard.diverged and guard.events == [] and trainer.global_step == 20


def test_guard_bench_runs(capsys):  # smoke: four 4-step fits of the RNN and the direct timings
    from src.bench.guard import main

    assert main(["--repeats", "1", "--steps", "3", "--warmup", "1", "--models", "rnn"]) == 0
    out = capsys.readouterr().out
    assert "| rnn | guard+grad_norm |" in out and "| model | norms_ms | decision_ms |" in out
