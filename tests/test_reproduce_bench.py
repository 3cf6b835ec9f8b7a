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
        assert row["vs_bare_min"] == row["vs_bare"] == row["vs_bare_max"]  # the range of one repeat
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
        "in_run": [{"model": "mlp", "share": 0.025}, {"model": "rnn", "share": 0.04}],
    }
    overhead = {"per_step": [{"size": "default", "share": 0.029}, {"size": "tiny", "share": 0.12}]}
    tables = {"loop": {"efficiency": loop_rows}, "telemetry": telemetry, "overhead": overhead}
    rows = {r["target"]: r for r in bench_all.targets(tables)}
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
        "telemetry / none, mlp, in one run (hooks on and off in alternating blocks)": "yes",  # 2.5% <= 3%
        "telemetry / none, rnn, in one run (hooks on and off in alternating blocks)": "no",  # 4% > 3%
        "default callbacks + logging / the same run without them, default size (one run)": "yes",  # 2.9% <= 3%
        "default callbacks + logging / the same run without them, tiny size (one run)": "no",
    }
    assert rows["default run / bare loop, tiny size"]["measured"] == 0.59
    assert bench_all.targets({}) == []  # neither module ran: no targets section


def test_a_target_holds_when_every_repeat_meets_it_and_says_when_lightning_alone_misses_it() -> None:
    loop_rows = [
        {"size": "default", "variant": "gradlab", "vs_bare": 0.92, "vs_bare_min": 0.91, "vs_bare_max": 0.95,
         "vs_empty": 0.975, "vs_empty_min": 0.95, "vs_empty_max": 0.99},
        {"size": "default", "variant": "empty_lightning", "vs_bare": 0.95, "vs_bare_min": 0.93, "vs_bare_max": 0.97},
        {"size": "tiny", "variant": "gradlab", "vs_bare": 0.40, "vs_bare_min": 0.38, "vs_bare_max": 0.45},
        {"size": "tiny", "variant": "empty_lightning", "vs_bare": 0.58, "vs_bare_min": 0.55, "vs_bare_max": 0.59},
    ]  # fmt: skip
    profile = {"per_step": [{"part": "math", "share": 0.9}, {"part": "gradlab callbacks", "share": 0.03},
                            {"part": "loggers", "share": 0.004}, {"part": "progress bar", "share": 0.001}]}  # fmt: skip
    rows = {r["target"]: r for r in bench_all.targets({"loop": {"efficiency": loop_rows}, "profile": profile})}
    default, default_empty = (
        rows["default run / bare loop, default size"],
        rows["default run / empty Lightning loop, default size"],
    )
    assert default["holds"] == "yes" and (default["min"], default["max"]) == (0.91, 0.95) and default["why"] is None
    assert default_empty["holds"] == "yes by the median; repeats on both sides"  # 0.95 < 0.97 <= 0.975
    tiny = rows["default run / bare loop, tiny size"]
    assert tiny["holds"] == "no" and tiny["why"] == "below Lightning's floor: its empty loop reads at most 0.590x bare"
    own = rows["(profile, default size: gradlab's own share of a step (callbacks, loggers, progress bar))"]
    assert own["measured"] == pytest.approx(0.035) and own["holds"] is None
    assert bench_all.verdict({"x": 0.02, "x_min": 0.01, "x_max": 0.04}, "x", 0.03, at_least=False) == (
        "yes by the median; repeats on both sides"
    )
    assert bench_all.verdict({"x": 0.04, "x_min": 0.035, "x_max": 0.05}, "x", 0.03, at_least=False) == "no"


@pytest.mark.slow  # a real module run in its own process; targets() and write_doc are tested above
def test_bench_all_smoke_writes_the_doc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = ["--steps", "3", "--warmup", "1", "--repeats", "1", "--models", "rnn"]
    monkeypatch.setitem(bench_all.SHORT_ARGS, "guard", tiny)
    assert bench_all.main(["--only", "guard", "--docs", str(tmp_path)]) == 0
    sections = bench_all.earlier_sections(tmp_path / "benchmarks.md")
    assert list(sections) == ["guard"]  # no loop or telemetry run: no targets section
    assert sections["guard"].startswith(f"`python scripts/bench.py guard {' '.join(tiny)}` (")
    assert "| rnn | guard+grad_norm |" in sections["guard"] and "failed" not in sections["guard"]
