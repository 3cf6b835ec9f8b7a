"""scripts/bench.py overhead: the gate switches other callbacks' per-step hooks by block, and its arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from src.bench.overhead import BlockGate, main, split
from src.callbacks.group import CallbackGroup
from tests.tiny_module import Tiny


class Counter(L.Callback):
    """Counts the optimizer steps its on_before_optimizer_step saw."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.seen.append(trainer.global_step)


@pytest.mark.parametrize("grouped", [True, False])
def test_other_callbacks_run_only_in_the_on_blocks(tmp_path: Path, grouped: bool) -> None:
    inside, outside = Counter(), Counter()
    gate = BlockGate(block=3, warmup=0, out=str(tmp_path / "gate.json"))
    members = [CallbackGroup([gate, inside]), outside] if grouped else [gate, inside, outside]
    data = DataLoader(TensorDataset(torch.randn(20, 2), torch.randn(20, 1)), batch_size=1)
    trainer = L.Trainer(max_steps=20, logger=False, callbacks=members, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=5)  # fmt: skip
    trainer.fit(Tiny(), data)
    on = [s for s in range(20) if (s // 3) % 2 == 0]  # steps 0-2 on, 3-5 off, ...
    assert inside.seen == on and outside.seen == on
    assert sorted(gate.durations) == list(range(1, 20))  # every batch but the last (no next start) is timed
    assert json.loads((tmp_path / "gate.json").read_text())["block_pairs"] > 0


def test_split_from_known_step_times() -> None:
    gate = BlockGate(block=2, warmup=0, out="unused")
    every = 5

    def logs(b: int) -> bool:
        return b == 1 or b % every in (0, 1)

    gate.durations = {b: (3.0 if logs(b) else 1.1 if gate.is_on(b) else 1.0) / 1e3 for b in range(1, 41)}
    got = split(gate, every)
    on_batches = [b for b in range(1, 41) if gate.is_on(b)]
    share_logging = sum(logs(b) for b in on_batches) / len(on_batches)
    assert got["step_on_ms"] == pytest.approx(1.1) and got["step_off_ms"] == pytest.approx(1.0)
    assert got["callbacks_ms"] == pytest.approx(0.1)
    assert got["logging_ms"] == pytest.approx((3.0 - 1.1) * share_logging)
    assert got["share"] == pytest.approx(((1 - share_logging) * 0.1 + (3.0 - 1.1) * share_logging) / 1.0)


def test_bench_overhead_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bench.json"
    assert main(["--steps", "24", "--warmup", "2", "--sizes", "tiny", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["per_step"]
    assert row["size"] == "tiny" and row["step_off_ms"] > 0 and row["block_pairs"] >= 2
