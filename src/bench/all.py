"""Every benchmark of src/bench/ in turn, its tables printed and written into docs/benchmarks.md.

    python scripts/bench.py all [--only loop telemetry] [--long] [--threads 1] [--docs docs]

Each module runs in its own process (``scripts/bench.py NAME --out ...``) with OMP_NUM_THREADS set, so one
module's threads or loggers cannot leak into the next. By default each gets the short form below (every table,
fewer repeats, steps and variants: ``make bench`` fits in 10 minutes on two CPU cores); ``--long`` runs every
module with its own defaults (every section and variant, more repeats: several times longer).
"""

from __future__ import annotations

import argparse
import json
import os
import pkgutil
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import src.bench
from src.bench._harness import Tables, markdown
from src.config import CONF_DIR
from src.environment import cpu_name

REPO = CONF_DIR.parent
SHORT_ARGS = {
    # 600 timed steps (24 logging steps): 200-step windows read the default run several points below longer ones
    "loop": ["--sections", "efficiency", "optimizer", "--repeats", "3", "--steps", "600"],
    "telemetry": ["--variants", "none", "default", "--repeats", "5", "--steps", "200"],  # the targets: 5 pairs
    "guard": ["--repeats", "3", "--steps", "60"],  # whole runs scatter more than the guard costs: timed directly too
    "profile": ["--steps", "600"],
    "overhead": ["--steps", "1000"],
}


def bench_names() -> list[str]:
    modules = pkgutil.iter_modules(src.bench.__path__)
    return sorted(m.name for m in modules if m.name != "all" and not m.name.startswith("_"))  # _x: helpers


def measured(name: str, args: argparse.Namespace) -> tuple[str, str, Tables]:
    """Run one benchmark module in its own process: (its command line, its tables as markdown, the tables)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{name}.json"
        cmd = [
            sys.executable,
            str(REPO / "scripts" / "bench.py"),
            name,
            *([] if args.long else SHORT_ARGS.get(name, [])),
        ]
        print(f"[bench] {' '.join(cmd[1:])}", flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        proc = subprocess.run([*cmd, "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True, check=False)
        command = " ".join(["python scripts/bench.py", *cmd[2:]])
        if proc.returncode != 0:
            return command, f"failed (exit {proc.returncode}):\n\n```\n{proc.stderr[-2000:]}\n```", {}
        tables = json.loads(out.read_text())
        return command, f"{tables.pop('header')}\n\n{markdown(tables)}", tables


ADDED = "added (hooks + clip - clip of none)"  # src/bench/telemetry.py's row of what telemetry adds to a step


def _row(table: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((r for r in table if all(r.get(k) == v for k, v in match.items())), None)


def verdict(row: dict[str, Any], key: str, bound: float, at_least: bool) -> str:
    """Whether ``row[key]`` meets ``bound``: "yes" or "no" when the repeats' range (``<key>_min``, ``<key>_max``)
    agrees with the median (a row without a range: the median's answer), else the median's answer, qualified."""

    def meets(value: float) -> bool:
        return value >= bound if at_least else value <= bound

    median = meets(row[key])
    ends = [meets(row[k]) for k in (f"{key}_min", f"{key}_max") if row.get(k) is not None]
    answer = "yes" if median else "no"
    return answer if all(end == median for end in ends) else f"{answer} by the median; repeats on both sides"


OWN_PARTS = ("gradlab callbacks", "loggers", "progress bar")  # src/bench/profile.py's parts that are gradlab's


def targets(results: dict[str, Tables]) -> list[dict[str, Any]]:
    """Issue 12's targets against this run's tables: bound, the measured median and range over repeats, whether it
    holds (``verdict``) and, where the run shows it, why it cannot: Lightning's own loop below the bound."""
    rows: list[dict[str, Any]] = []

    def check(target: str, row: dict[str, Any] | None, key: str, bound: float, at_least: bool, why: str = "") -> None:
        if row is not None and row.get(key) is not None:
            rows.append({"target": target, "bound": f"{'>=' if at_least else '<='} {bound}", "measured": row[key],
                         "min": row.get(f"{key}_min"), "max": row.get(f"{key}_max"),
                         "holds": verdict(row, key, bound, at_least), "why": why or None})  # fmt: skip

    def info(target: str, value: float) -> None:  # no target: what bounds the others
        rows.append({"target": f"({target})", "bound": None, "measured": value, "holds": None})

    loop = results.get("loop", {}).get("efficiency", [])
    for size, bound in (("default", 0.90), ("tiny", 0.60)):
        gradlab, empty = _row(loop, size=size, variant="gradlab"), _row(loop, size=size, variant="empty_lightning")
        floor = empty.get("vs_bare_max", empty["vs_bare"]) if empty else None
        below = floor is not None and floor < bound
        why = f"below Lightning's floor: its empty loop reads at most {floor:.3f}x bare" if below else ""
        check(f"default run / bare loop, {size} size", gradlab, "vs_bare", bound, True, why)
        check(f"default run / empty Lightning loop, {size} size", gradlab, "vs_empty", 0.97, True)
        if empty:
            info(f"empty Lightning loop / bare loop, {size} size: Lightning's floor", empty["vs_bare"])
    for row in results.get("overhead", {}).get("per_step", []):  # gradlab's own, inside one run
        target = f"default callbacks + logging / the same run without them, {row['size']} size (one run)"
        check(target, row, "share", 0.03, False)
    parts = {r["part"]: r["share"] for r in results.get("profile", {}).get("per_step", [])}
    if parts:
        info("profile, default size: gradlab's own share of a step (callbacks, loggers, progress bar)",
             sum(parts.get(p, 0.0) for p in OWN_PARTS))  # fmt: skip
    telemetry = results.get("telemetry", {})
    for model in ("mlp", "rnn"):
        run = _row(telemetry.get("runs", []), model=model, variant="default")
        check(f"telemetry / none, {model}, whole run (wall)", run, "ratio", 0.97, True)
        check(f"telemetry / none, {model}, whole run (CPU)", run, "cpu_ratio", 0.97, True)
        added = _row(telemetry.get("callbacks", []), model=model, variant="default", callback=ADDED)
        check(f"telemetry's added CPU share, {model}, hooks timed directly", added, "share_of_cpu", 0.03, False)
        gated = _row(telemetry.get("in_run", []), model=model)
        check(f"telemetry / none, {model}, in one run (hooks on and off in alternating blocks)", gated, "share", 0.03,
              False)  # fmt: skip
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench.py all", description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=bench_names(), default=bench_names())
    parser.add_argument("--long", action="store_true", help="every module's full defaults (several times longer)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every module")
    parser.add_argument("--docs", type=Path, default=REPO / "docs")
    args = parser.parse_args(argv)
    sections, results, started = [], {}, time.perf_counter()
    for name in args.only:
        start = time.perf_counter()
        command, text, results[name] = measured(name, args)
        print(text + "\n", flush=True)
        sections.append((name, command, time.perf_counter() - start, text))
        write_doc(args, sections)  # after every module: a long run leaves what it has measured
    rows = targets(results)
    if rows:
        text = markdown({"targets": rows})
        print(text, flush=True)
        command = f"python scripts/bench.py all{' --long' if args.long else ''}: the loop and telemetry tables above"
        sections.append(("targets", command, time.perf_counter() - started, text))
        write_doc(args, sections)
    print(f"[bench] wrote {args.docs / 'benchmarks.md'} in {time.perf_counter() - started:.0f} s")
    return 0


def earlier_sections(path: Path) -> dict[str, str]:
    """The body of each ``## name`` section of an earlier benchmarks.md (kept when ``--only`` skips it)."""
    if not path.exists():
        return {}
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(body).strip("\n") for name, body in sections.items()}


def write_doc(args: argparse.Namespace, sections: list[tuple[str, str, float, str]]) -> None:
    """docs/benchmarks.md: the modules just run, and the sections of modules not run this time kept as they were."""
    path = args.docs / "benchmarks.md"
    kept = earlier_sections(path)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    machine = f"{cpu_name()}, {os.cpu_count()} cores visible, OMP_NUM_THREADS={args.threads}"
    software = f"torch {torch.__version__}, Python {platform.python_version()}"
    for name, command, wall, tables in sections:
        kept[name] = f"`{command}` ({wall:.0f} s), {stamp}; {machine}, {software}\n\n{tables}"
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python scripts/bench.py all`; `--only NAME` reruns one section and keeps the",
        "others). Ratios are measured side by side in one run (interleaved repeats, medians); absolute steps/s on",
        "a shared machine vary from run to run.",
        "",
    ]
    order = [n for n in bench_names() if n in kept] + [n for n in kept if n not in bench_names()]
    for name in order:
        lines += [f"## {name}", "", kept[name], ""]
    args.docs.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
