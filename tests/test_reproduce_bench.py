"""Loop benchmark and the `make bench` collector: smoke runs and the table extraction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from src.bench import all as bench_all
from src.bench import loop


def test_final_table_keeps_the_last_summary_block() -> None:
    out = "repeat 0 mlp none 10.0 steps/s\n\nmedian of 5 interleaved runs\nmodel variant\nmlp none 10.0 1.000\n"
    assert bench_all.final_table(out) == "median of 5 interleaved runs\nmodel variant\nmlp none 10.0 1.000"


@pytest.mark.slow
def test_loop_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "loop.json"
    args = ["--steps", "5", "--warmup", "2", "--repeats", "1", "--scaling-repeats", "1", "--out", str(out)]
    assert loop.main(args) == 0
    result = json.loads(out.read_text())
    variants = {(r["size"], r["variant"]) for r in result["efficiency"]}
    assert variants == {(s, v) for s in ("default", "tiny") for v in ("bare", "gradlab", "gradlab_bare")}
    assert all(r["steps_per_s"] > 0 for r in result["efficiency"] + result["scaling"])
    assert {r["model"] for r in result["scaling"]} == {"rnn", "lstm", "mlp"}
