"""Checks only a CUDA GPU can make (marked ``gpu``: skipped without one; ``make gpu-check`` runs them).

- no host synchronisation between logging steps with every default monitor and the guard on, except the one
  per optimizer step that the DivergenceGuard documents (its skip/stop decision; its cost is measured by
  ``scripts/bench.py guard --device cuda``);
- DDP over NCCL with one process builds and trains exactly as one device does.

The CUDA versions of checks that also run on the CPU are parameters of their CPU tests: 16-mixed with the real
GradScaler and bf16-mixed in test_precision.py, the unrolled pass against cuDNN's fused RNN/LSTM/GRU in
test_telemetry_through_time.py.
"""

from __future__ import annotations

import json
import traceback
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.distributed as dist
from omegaconf import OmegaConf, open_dict

from src.analysis.runs import load_run
from src.train import train

pytestmark = pytest.mark.gpu

SYNC_WARNING = "called a synchronizing CUDA operation"  # torch.cuda.set_sync_debug_mode("warn")'s message


def _short(filename: str) -> str:
    """A frame's file from the package on: src/..., lightning/..., torch/... (site-packages paths are long)."""
    parts = Path(filename).parts
    for root in ("src", "tests", "lightning", "torch", "torchmetrics"):
        if root in parts:
            return "/".join(parts[len(parts) - 1 - parts[::-1].index(root) :])
    return filename


class SyncLedger(L.Callback):
    """Every host synchronisation while fitting on CUDA, with the Python stack that made it, attributed to the
    optimizer step whose ``on_train_batch_start`` ran last (so it must be the first callback), written to
    ``out`` (JSON) when training ends.

    Args:
        out: path of the JSON file: ``{"syncs": [{"step": int | None, "stack": [[file, line, function, code]]}]}``,
            the innermost frame last.
    """

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.step: int | None = None
        self.syncs: list[dict[str, Any]] = []
        self._warnings: Any = None  # the catch_warnings context while fitting
        self._show: Any = warnings.showwarning  # what shows every other warning meanwhile

    def _record(self, message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None):
        if SYNC_WARNING not in str(message):
            return self._show(message, category, filename, lineno, file, line)
        frames = [f for f in traceback.extract_stack()[:-1] if not f.filename.endswith("warnings.py")]
        stack = [[_short(f.filename), f.lineno, f.name, (f.line or "").strip()] for f in frames[-8:]]
        self.syncs.append({"step": self.step, "stack": stack})
        return None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.filterwarnings("always", message=SYNC_WARNING)  # every one, not once per code location
        self._show = warnings.showwarning
        warnings.showwarning = self._record  # called while the warning is raised: the stack is the caller's
        torch.cuda.set_sync_debug_mode("warn")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        self.step = trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()
        self.out.write_text(json.dumps({"syncs": self.syncs}, indent=1))

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._stop()  # also after a failed fit: no warn mode and no patched showwarning left for later tests

    def _stop(self) -> None:
        torch.cuda.set_sync_debug_mode("default")
        if self._warnings is not None:
            self._warnings.__exit__(None, None, None)
            self._warnings = None


def is_guard_decision(sync: dict[str, Any]) -> bool:
    """The guard's documented sync: the flags' ``.tolist()`` in DivergenceGuard.on_before_optimizer_step."""
    file, _, function, code = sync["stack"][-1]
    return file == "src/callbacks/divergence.py" and function == "on_before_optimizer_step" and "tolist" in code


def where(sync: dict[str, Any]) -> str:
    return " <- ".join(f"{file}:{line} {function}" for file, line, function, _ in reversed(sync["stack"][-4:]))


STEPS, EVERY = 60, 25  # logging steps 0, 24, 49 (Lightning's, and 0); the guard's spike medians run from step 20


def test_no_host_sync_between_logging_steps_except_the_guards_decision(make_cfg, tmp_path: Path):
    ledger = tmp_path / "syncs.json"
    cfg = make_cfg(
        "trainer=gpu",
        "trainer.accelerator=gpu",
        "trainer.devices=1",
        "trainer.precision=32-true",
        "trainer.enable_progress_bar=true",
        f"trainer.max_steps={STEPS}",
        f"trainer.log_every_n_steps={EVERY}",
        "callbacks=default",
        "model=lstm",
        "model.hidden_size=64",
        "model.num_layers=1",
        "data=adding",
        "data.seq_len=50",
        "data.batch_size=64",
        "data.batches_per_epoch=1000",  # no validation inside the fit
        "optimizer=adam",
        "clip=1.0",
        "clip_algorithm=norm",
    )
    with open_dict(cfg):  # the ledger first, so a step's syncs are counted from its first hook on
        ledger_cfg = {"_target_": "tests.test_gpu.SyncLedger", "out": str(ledger)}
        cfg.callbacks = {"sync_ledger": ledger_cfg, **OmegaConf.to_container(cfg.callbacks)}
    summary = train(cfg)
    assert summary["status"] == "completed" and summary["steps"] == STEPS
    syncs = json.loads(ledger.read_text())["syncs"]
    by_step: dict[int, list[dict[str, Any]]] = {s: [] for s in range(STEPS)}
    for sync in syncs:
        if sync["step"] is not None:
            by_step[sync["step"]].append(sync)
    logging_steps = [s for s in range(STEPS) if s == 0 or (s + 1) % EVERY == 0]  # src/callbacks/schedule.py
    assert all(by_step[s] for s in logging_steps)  # the ledger sees syncs: logging steps do copy to the host
    # steps 0-1 warm up (cuDNN autotuning, first allocations); the last one ends the fit (validation, checkpoint)
    checked = [s for s in range(2, STEPS - 1) if s not in logging_steps]
    unexpected = {s: [where(x) for x in by_step[s] if not is_guard_decision(x)] for s in checked}
    assert not any(unexpected.values()), {s: w for s, w in unexpected.items() if w}
    assert [sum(map(is_guard_decision, by_step[s])) for s in checked] == [1] * len(checked)


def test_ddp_over_nccl_with_one_process_trains_as_one_device(make_cfg):
    run = (
        "trainer.accelerator=gpu",
        "trainer.devices=1",
        "trainer.max_steps=8",
        "trainer.log_every_n_steps=1",
        "callbacks=default",
        "model=lstm",
        "model.hidden_size=32",
        "data=adding",
        "data.seq_len=20",
        "data.batch_size=32",
        "optimizer=adam",
        "clip=1.0",
        "clip_algorithm=norm",
    )
    single = train(make_cfg("trainer=gpu", *run))
    try:
        ddp = train(make_cfg("trainer=ddp", *run))
        assert dist.is_initialized() and dist.get_backend() == "nccl" and dist.get_world_size() == 1
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    assert ddp["status"] == "completed" and ddp["steps"] == 8
    assert ddp["hardware"]["strategy"] == "DDPStrategy" and ddp["hardware"]["world_size"] == 1
    # rank 0 draws the one device's batches and DDP averages over one rank: the same gradients, step by step
    ddp_norms = load_run(Path(ddp["run_dir"])).series["grad/norm_total_preclip"]
    single_norms = load_run(Path(single["run_dir"])).series["grad/norm_total_preclip"]
    assert [s for s, _ in ddp_norms] == list(range(8))
    for (_, a), (_, b) in zip(ddp_norms, single_norms, strict=True):
        assert a == pytest.approx(b, rel=1e-4)
