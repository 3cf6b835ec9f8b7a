"""Loop benchmark and the `make bench` collector: smoke runs and the table extraction."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from src.bench import _harness as bench_harness
from src.bench import all as bench_all
from src.bench import loop


def test_the_runner_writes_a_modules_tables_as_markdown_in_the_one_number_format() -> None:
    tables = {"runs": [{"model": "mlp", "variant": "none", "steps_per_s": 27.71234, "peak_mib": None}]}
    text = bench_harness.markdown(tables)
    assert (
        text == "runs:\n\n| model | variant | steps_per_s | peak_mib |\n|---|---|---|---|\n| mlp | none | 27.71 | – |"
    )


def test_loop_bench_smoke_tiny(tmp_path: Path) -> None:
    out = tmp_path / "loop.json"
    args = ["--sections", "efficiency", "--sizes", "tiny", "--steps", "3", "--warmup", "1", "--repeats", "1"]
    assert loop.main([*args, "--out", str(out)]) == 0
    rows = {r["variant"]: r for r in json.loads(out.read_text())["efficiency"]}
    assert list(rows) == loop.VARIANTS == ["bare", "empty_lightning", "gradlab_bare", "gradlab"]
    assert rows["bare"]["vs_bare"] == 1.0 and rows["empty_lightning"]["vs_empty"] == 1.0
    for row in rows.values():  # each ratio is the same run's rate over the baseline's (one repeat: no median)
        assert row["vs_bare"] == pytest.approx(row["steps_per_s"] / rows["bare"]["steps_per_s"])
        assert row["vs_empty"] == pytest.approx(row["steps_per_s"] / rows["empty_lightning"]["steps_per_s"])
        assert row["peak_mib"] > 50  # the CPU's peak RSS of the whole process: torch alone is more


@pytest.mark.slow
def test_loop_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "loop.json"
    args = ["--steps", "5", "--warmup", "2", "--repeats", "1", "--scaling-repeats", "1", "--out", str(out)]
    assert loop.main(args) == 0
    result = json.loads(out.read_text())
    variants = {(r["size"], r["variant"]) for r in result["efficiency"]}
    assert variants == {(s, v) for s in ("default", "tiny") for v in loop.VARIANTS}
    assert {(r["sgd"], r["variant"]) for r in result["optimizer"]} == {
        (impl, v) for impl in loop.OPTIMIZERS for v in ("bare", "gradlab")
    }
    assert all(r["steps_per_s"] > 0 for r in result["efficiency"] + result["optimizer"] + result["scaling"])
    assert {r["model"] for r in result["scaling"]} == {"rnn", "lstm", "mlp"}


def test_rerunning_one_benchmark_keeps_the_other_sections(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nold header\n\n## guard\n\nold guard table\n\n## loop\n\n`loop cmd`\n\nloop table\n")
    args = argparse.Namespace(docs=tmp_path, threads=1, quick=False)
    bench_all.write_doc(args, [("guard", "python scripts/bench.py guard", 12.0, "new guard table")])
    text = doc.read_text()
    assert "old guard table" not in text and "old header" not in text
    sections = bench_all.earlier_sections(doc)
    assert list(sections) == ["guard", "loop"]  # the order of src/bench/, whatever the file had
    assert sections["loop"] == "`loop cmd`\n\nloop table"
    assert sections["guard"].startswith("`python scripts/bench.py guard` (12 s), ")
    assert sections["guard"].endswith("\n\nnew guard table")


def test_targets_read_this_runs_tables_and_say_which_hold() -> None:
    loop_rows = [
        {"size": "default", "variant": "gradlab", "vs_bare": 0.91, "vs_empty": 0.96},
        {"size": "default", "variant": "empty_lightning", "vs_bare": 0.95, "vs_empty": 1.0},
        {"size": "tiny", "variant": "gradlab", "vs_bare": 0.59, "vs_empty": 0.98},
    ]
    added = bench_all.ADDED
    telemetry = {
        "runs": [{"model": "mlp", "variant": "default", "ratio": 0.97, "cpu_ratio": 0.969}],
        "callbacks": [{"model": "mlp", "variant": "default", "callback": added, "share_of_cpu": 0.031}],
    }
    rows = {r["target"]: r for r in bench_all.targets({"loop": {"efficiency": loop_rows}, "telemetry": telemetry})}
    holds = {target: r["holds"] for target, r in rows.items()}
    assert holds == {
        "default run / bare loop, default size": "yes",  # 0.91 >= 0.90
        "default run / empty Lightning loop, default size": "no",  # 0.96 < 0.97
        "(empty Lightning loop / bare loop, default size: Lightning's floor)": None,  # reported, no target
        "default run / bare loop, tiny size": "no",
        "default run / empty Lightning loop, tiny size": "yes",
        "telemetry / none, mlp, whole run (wall)": "yes",  # the bound itself holds
        "telemetry / none, mlp, whole run (CPU)": "no",
        "telemetry's added CPU share, mlp, hooks timed directly": "no",  # 3.1% > 3%
    }
    assert rows["default run / bare loop, tiny size"]["measured"] == 0.59
    assert bench_all.targets({}) == []  # neither module ran: no targets section


def test_bench_all_smoke_writes_the_doc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = ["--steps", "3", "--warmup", "1", "--repeats", "1", "--models", "rnn"]
    monkeypatch.setitem(bench_all.SHORT_ARGS, "guard", tiny)
    assert bench_all.main(["--only", "guard", "--docs", str(tmp_path)]) == 0
    sections = bench_all.earlier_sections(tmp_path / "benchmarks.md")
    assert list(sections) == ["guard"]  # no loop or telemetry run: no targets section
    assert sections["guard"].startswith(f"`python scripts/bench.py guard {' '.join(tiny)}` (")
    assert "| rnn | guard+grad_norm |" in sections["guard"] and "failed" not in sections["guard"]
