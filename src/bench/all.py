"""Every benchmark of src/bench/ in turn, its tables printed and written into docs/benchmarks.md.

    python scripts/bench.py all [--only loop telemetry] [--long] [--threads 1] [--docs docs]

Each module runs in its own process (``scripts/bench.py NAME --out ...``) with OMP_NUM_THREADS set, so one
module's threads or loggers cannot leak into the next. By default each gets the short form below (every table,
fewer repeats, steps and variants: ``make bench`` fits in 10 minutes on two CPU cores); ``--long`` runs every
module with its own defaults (every section and variant, more repeats: about an hour on that CPU).
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

import torch

import src.bench
from src.bench._harness import markdown
from src.config import CONF_DIR
from src.environment import cpu_name

REPO = CONF_DIR.parent
SHORT_ARGS = {
    "loop": ["--sections", "efficiency", "optimizer", "--repeats", "3", "--steps", "300"],
    "telemetry": ["--variants", "none", "norm_floor", "default", "--repeats", "3", "--steps", "250"],
    "guard": ["--repeats", "3", "--steps", "150"],
    "profile": ["--steps", "600"],
}


def bench_names() -> list[str]:
    modules = pkgutil.iter_modules(src.bench.__path__)
    return sorted(m.name for m in modules if m.name != "all" and not m.name.startswith("_"))  # _x: helpers


def measured(name: str, args: argparse.Namespace) -> tuple[str, str]:
    """Run one benchmark module in its own process: (its command line, its tables as markdown)."""
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
            return command, f"failed (exit {proc.returncode}):\n\n```\n{proc.stderr[-2000:]}\n```"
        tables = json.loads(out.read_text())
        return command, f"{tables.pop('header')}\n\n{markdown(tables)}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench.py all", description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=bench_names(), default=bench_names())
    parser.add_argument("--long", action="store_true", help="every module's full defaults (about an hour)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every module")
    parser.add_argument("--docs", type=Path, default=REPO / "docs")
    args = parser.parse_args(argv)
    sections, started = [], time.perf_counter()
    for name in args.only:
        start = time.perf_counter()
        command, tables = measured(name, args)
        print(tables + "\n", flush=True)
        sections.append((name, command, time.perf_counter() - start, tables))
        write_doc(args, sections)  # after every module: a long run leaves what it has measured
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
