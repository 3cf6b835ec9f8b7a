"""scripts/bench.py telemetry runs end to end (a tiny budget: the numbers are not checked, the plumbing is)."""

from __future__ import annotations

import json
from pathlib import Path

from src.bench.telemetry import main


def test_bench_telemetry_smoke(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bench.json"
    argv = ["--steps", "3", "--warmup", "1", "--repeats", "1", "--variants", "none", "default", "watch_50"]
    assert main([*argv, "--out", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert set(results) == {f"{m}/{v}" for m in ("mlp", "rnn") for v in ("none", "default", "watch_50")}
    assert results["mlp/none"]["ratio"] == 1.0 and all(r["steps_per_s"] > 0 for r in results.values())
