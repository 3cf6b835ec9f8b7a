"""The parts of ``make gpu-check``, their share of the budget, and the table printed last.

Phase 1 runs the ``gpu`` tests beside the paper runs (neither is timed); phase 2 runs the benchmarks one after
another on a quiet machine. Every child gets a deadline inside ``--budget`` and is killed (its process group)
when it passes it; a part that no longer fits is skipped and says so. Files written into ``--out`` (7): table.txt,
gpu_check.json (every row and paper-run result, the environment), gpu_check.log (every child's output),
pytest.xml, bench_loop.json, bench_telemetry.json, bench_guard.json. Run directories and the carried packages
go to ``--work``. table.txt and gpu_check.json are rewritten after each part: a call cut short keeps what ran.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from src.gpu_check import paper
from src.gpu_check.bootstrap import child_env, ensure_packages

REPO = Path(__file__).resolve().parents[2]
PARTS = ("tests", "paper", "loop", "telemetry", "guard")
# seconds each benchmark may take on the GPU (phase 2), and the command-line arguments that fit it
BENCH_SECONDS = {"loop": 75, "telemetry": 95, "guard": 50}
BENCH_ARGS = {
    "loop": ["--sections", "efficiency", "--sizes", "default", "large", "--steps", "200", "--warmup", "20",
             "--repeats", "2"],
    "telemetry": ["--models", "mlp", "rnn", "rnn_large", "--steps", "200", "--warmup", "10", "--repeats", "2"],
    "guard": ["--models", "mlp", "rnn", "rnn_large", "--steps", "200", "--warmup", "10", "--repeats", "2"],
}  # fmt: skip
DRY_BENCH_ARGS = {
    "loop": ["--sections", "efficiency", "--sizes", "tiny", "--steps", "3", "--warmup", "1", "--repeats", "1"],
    "telemetry": ["--models", "rnn", "--variants", "none", "default", "--steps", "3", "--warmup", "1",
                  "--repeats", "1"],
    "guard": ["--models", "rnn", "--steps", "3", "--warmup", "1", "--repeats", "1"],
}  # fmt: skip
# the gpu tests, grouped into the checks of the table (by test function)
TEST_CHECKS = {
    "test_fp16_overflow_halves_the_scale_and_skips_the_step_with_unscaled_norms": "16-mixed: real GradScaler",
    "test_bf16_mixed_needs_no_scaler": "bf16-mixed: no scaler",
    "test_unrolled_pass_equals_the_fused_module_forward_and_backward": "unrolled pass = cuDNN RNN/LSTM/GRU",
    "test_profile_equals_a_fused_kernel_reference": "through-time profile = cuDNN reference",
    "test_no_host_sync_between_logging_steps_except_the_guards_decision": "no host sync between logging steps",
    "test_ddp_over_nccl_with_one_process_trains_as_one_device": "DDP over NCCL, one process",
}
PHASE1_MARGIN_S = 45  # paper runs: process start, validation and test after max_time, summary


@dataclass
class Check:
    """The state of one call: arguments, deadline, children's environment, the table's rows, the results."""

    args: argparse.Namespace
    dry_run: bool
    deadline: float
    env: dict[str, str]
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)  # (part, check, result, measured)
    record: dict[str, Any] = field(default_factory=dict)
    failed: bool = False

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def row(self, part: str, check: str, result: str, measured: str = "") -> None:
        self.rows.append((part, check, result, measured))
        self.failed |= result.startswith(("FAILED", "failed", "error"))


def start(cmd: list[str], log: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        # its own process group: a deadline kills it and every process it started
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def wait(procs: dict[str, subprocess.Popen], deadline: float) -> dict[str, str]:
    """Wait for every child until ``deadline``; kill what is left then. Returns each one's outcome."""
    outcome: dict[str, str] = {}
    for name, proc in procs.items():
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            outcome[name] = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            outcome[name] = "timed out"
    return outcome


def append_log(check: Check, title: str, log: Path) -> None:
    with (check.args.out / "gpu_check.log").open("a") as f:
        f.write(f"\n### {title}\n{log.read_text(errors='replace') if log.exists() else '(no output)'}\n")


def environment(check: Check, packages: str) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    env: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "packages": packages,
    }
    probe = "import lightning as L, hydra, omegaconf, wandb\nprint(L.__version__, hydra.__version__, wandb.__version__)"
    done = subprocess.run([sys.executable, "-c", probe], env=check.env, capture_output=True, text=True, check=False)
    env["lightning_hydra_wandb"] = done.stdout.strip() if done.returncode == 0 else f"error: {done.stderr[-300:]}"
    if shutil.which("nvidia-smi"):
        smi = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        env["driver"] = subprocess.run(smi, capture_output=True, text=True, check=False).stdout.strip()
    return env


def tests_command(check: Check) -> list[str]:
    xml = check.args.out / "pytest.xml"
    # a test module this Python cannot import (a package the image lacks) is reported, and the rest still runs
    return [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "--timeout", "240",
            "--continue-on-collection-errors", f"--junitxml={xml}", "tests"]  # fmt: skip


def test_rows(check: Check, outcome: str) -> None:
    xml = check.args.out / "pytest.xml"
    if not xml.exists():
        check.row("tests", "pytest -m gpu", f"failed ({outcome}, no report)")
        return
    by_check: dict[str, list[tuple[str, str]]] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = case.get("name", "")
        function = name.split("[")[0] if case.get("classname") else f"collecting {name}"  # a module not imported
        result = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        detail = next((c.get("message", "") for c in case if c.tag in ("failure", "error")), "")
        by_check.setdefault(TEST_CHECKS.get(function, function), []).append((result, f"{case.get('name')}: {detail}"))
    if not by_check:
        check.row("tests", "pytest -m gpu", f"failed ({outcome}, no test collected)")
    for label, cases in by_check.items():
        counts = {r: sum(1 for c, _ in cases if c == r) for r in ("passed", "failure", "error", "skipped")}
        if counts["skipped"] == len(cases):
            check.row("tests", label, f"skipped ({len(cases)})", "needs a CUDA GPU")
        elif counts["failure"] or counts["error"]:
            bad = [d for r, d in cases if r in ("failure", "error")]
            check.row("tests", label, f"FAILED {len(bad)} of {len(cases)}", bad[0][:160])
        else:
            check.row("tests", label, f"passed ({counts['passed']} of {len(cases)})")
    check.record["tests"] = {k: [list(c) for c in v] for k, v in by_check.items()}


def paper_rows(check: Check, runs_dir: Path, outcomes: dict[str, str]) -> None:
    results = []
    for spec in paper.RUNS:
        res = paper.result(spec, runs_dir / spec.name, check.dry_run)
        res["outcome"] = outcomes.get(spec.name, "not run")
        results.append(res)
        if "steps" not in res:
            check.row("paper", spec.label, f"failed ({res['outcome']}: {res['status']})")
            continue
        val, ratio, wall = res["val_loss"], res["val_loss_vs_baseline"], res["wall_time_s"] or 0.0
        steps = f"{res['steps']} steps in {wall:.0f} s ({res['status']})"
        measured = (
            f"val {'MSE' if spec.task == 'adding' else 'CE'} {val:.4g} = {ratio:.3g}x baseline {res['baseline']:.4g}, "
            + steps
            if val is not None and ratio is not None
            else f"no val/loss, {steps}"
        )
        if check.dry_run:
            measured += f" [dry run: {paper.DRY_RUN_SIZE}]"
        check.row("paper", spec.label, res["verdict"], measured)
        check.row("", "", "", f"published: {spec.published}")
    check.record["paper_runs"] = results


def bench_rows(check: Check, name: str, path: Path) -> None:
    data = json.loads(path.read_text())
    mark = "dry run (cpu)" if check.dry_run else "measured"
    if name == "loop":
        for size in dict.fromkeys(r["size"] for r in data["efficiency"]):
            rows = {r["variant"]: r for r in data["efficiency"] if r["size"] == size}
            peak = rows["gradlab"].get("peak_mib")
            check.row(
                "bench loop",
                f"{size}: gradlab vs bare loop",
                mark,
                f"bare {rows['bare']['steps_per_s']:.0f} steps/s; gradlab {rows['gradlab']['vs_bare']:.3f}x, "
                f"callbacks=none logger=none {rows['gradlab_bare']['vs_bare']:.3f}x, "
                f"empty Lightning loop {rows['empty_lightning']['vs_bare']:.3f}x"
                + (f"; peak {peak:.0f} MiB" if peak is not None else ""),
            )
    elif name == "telemetry":
        results = {f"{r['model']}/{r['variant']}": r for r in data["runs"]}
        for model in dict.fromkeys(k.split("/")[0] for k in results):
            none = results[f"{model}/none"]
            ratios = [f"{k.split('/')[1]} {v['ratio']:.3f}x" for k, v in results.items() if k.startswith(f"{model}/")]
            peak = results.get(f"{model}/default", none).get("peak_mib")
            check.row(
                "bench telemetry",
                f"{model}: monitors vs none",
                mark,
                f"none {none['steps_per_s']:.0f} steps/s; " + ", ".join(ratios[1:])
                + (f"; peak {peak:.0f} MiB (default)" if peak is not None else ""),
            )  # fmt: skip
    else:
        results = {f"{r['model']}/{r['variant']}": r for r in data["runs"]}
        results |= {f"{r['model']}/direct": r for r in data["direct"]}
        for model in dict.fromkeys(k.split("/")[0] for k in results):
            guard, shared, direct = (results[f"{model}/{v}"] for v in ("guard", "guard+grad_norm", "direct"))
            check.row(
                "bench guard",
                f"{model}: guard's per-step sync",
                mark,
                f"guard vs none {guard['ratio']:.3f}x ({guard['ms']:+.2f} ms/step), beside GradNormMonitor "
                f"{shared['ratio']:.3f}x; decision {direct['decision_ms']:.3f} ms = "
                f"{100 * direct['decision_ms'] / direct['step_ms']:.1f}% of a step",
            )


def phase1(check: Check, parts: list[str], reserve_s: float) -> None:
    """The gpu tests beside the paper runs, until the time phase 2 needs is all that is left."""
    work, procs = check.args.work, {}
    deadline = check.deadline - reserve_s
    if "tests" in parts:
        procs["tests"] = start(tests_command(check), work / "logs" / "tests.log", check.env, REPO)
    runs_dir = work / "runs"
    max_time = max(10, int(min(check.args.paper_time, deadline - time.monotonic() - PHASE1_MARGIN_S)))
    if "paper" in parts:
        shutil.rmtree(runs_dir, ignore_errors=True)
        pending = list(paper.RUNS)
        lanes = len(pending) if not check.dry_run else max(1, min(len(pending), (os.cpu_count() or 2) // 2))
        env = {**check.env, "OMP_NUM_THREADS": "2"}
        running: dict[str, subprocess.Popen] = {}
        while pending or running:  # at most `lanes` at once (all of them on the GPU)
            while pending and len(running) < lanes:
                spec = pending.pop(0)
                cmd = [sys.executable, str(REPO / "scripts" / "train.py"), *spec.overrides(runs_dir / spec.name,
                       max_time, check.dry_run)]  # fmt: skip
                running[spec.name] = start(cmd, work / "logs" / f"{spec.name}.log", env, work)
            time.sleep(1)
            for name in [n for n, p in running.items() if p.poll() is not None]:
                procs[name] = running.pop(name)
            if time.monotonic() > deadline:
                procs.update(running)
                break
    outcomes = wait(procs, deadline)
    check.record.setdefault("outcomes", {}).update(outcomes)
    if "tests" in parts:
        append_log(check, f"pytest -m gpu ({outcomes['tests']})", work / "logs" / "tests.log")
        test_rows(check, outcomes["tests"])
    if "paper" in parts:
        for spec in paper.RUNS:
            log = work / "logs" / f"{spec.name}.log"
            append_log(check, f"paper {spec.name} ({outcomes.get(spec.name, 'not run')})", log)
        check.record["paper_max_time_s"] = max_time
        paper_rows(check, runs_dir, outcomes)


def phase2(check: Check, parts: list[str]) -> None:
    """The benchmarks, one after another on a quiet machine, each inside its share of what is left."""
    for name in (p for p in ("loop", "telemetry", "guard") if p in parts):
        out = check.args.out / f"bench_{name}.json"
        device = "cpu" if check.dry_run else "cuda"
        args = DRY_BENCH_ARGS[name] if check.dry_run else BENCH_ARGS[name]
        cmd = [sys.executable, str(REPO / "scripts" / "bench.py"), name, *args, "--device", device, "--out", str(out)]
        allowed = min(BENCH_SECONDS[name] * 1.5, check.left() - 5)
        if allowed < 20:
            check.row(f"bench {name}", "skipped", "skipped: out of time", f"{check.left():.0f} s left")
            continue
        log = check.args.work / "logs" / f"bench_{name}.log"
        began = time.monotonic()
        outcome = wait({name: start(cmd, log, {**check.env, "OMP_NUM_THREADS": "1"}, check.args.work)},
                       time.monotonic() + allowed)[name]  # fmt: skip
        append_log(check, f"bench {name} ({outcome}, {time.monotonic() - began:.0f} s)", log)
        check.record.setdefault("outcomes", {})[f"bench_{name}"] = outcome
        if outcome == "ok" and out.exists():
            bench_rows(check, name, out)
        else:
            check.row(f"bench {name}", "ran", f"failed ({outcome})", "see gpu_check.log")
        write_results(check)


def table(check: Check) -> str:
    env = check.record.get("environment", {})
    where = f"{env.get('gpu')} ({env.get('gpu_memory_gib')} GiB)" if env.get("gpu") else "no CUDA GPU"
    where += ": DRY RUN (GPU parts skipped, the rest tiny on the CPU)" if check.dry_run else ""
    lines = [
        f"gradlab GPU check, {env.get('date')}: {where}; torch {env.get('torch')}, CUDA {env.get('cuda')}, "
        f"cuDNN {env.get('cudnn')}, driver {env.get('driver', '?')}; lightning hydra wandb "
        f"{env.get('lightning_hydra_wandb')}; Python {env.get('python')}, {env.get('cpus')} CPUs",
    ]
    width = [max(len(r[i]) for r in check.rows) if check.rows else 0 for i in range(3)]
    lines += [f"{p:{width[0]}s}  {c:{width[1]}s}  {r:{width[2]}s}  {m}".rstrip() for p, c, r, m in check.rows]
    return "\n".join(lines)


def write_results(check: Check) -> None:
    check.record["rows"] = [list(r) for r in check.rows]
    (check.args.out / "gpu_check.json").write_text(json.dumps(check.record, indent=1, default=str))
    (check.args.out / "table.txt").write_text(table(check) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gpu_check.py", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="result folder (on the device machine: $OUT)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gradlab-gpu-check"), help="run dirs, packages")
    parser.add_argument("--budget", type=float, default=470, help="seconds for the whole check (default 470)")
    parser.add_argument("--paper-time", type=int, default=240, help="trainer.max_time cap of the paper runs (s)")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="run only these parts")
    parser.add_argument("--dry-run", action="store_true", help="as without CUDA: GPU parts skip, the rest is tiny")
    args = parser.parse_args(argv)
    dry_run = args.dry_run or not torch.cuda.is_available()
    args.out, args.work = args.out.resolve(), args.work.resolve()  # children run in other directories
    began = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "wandb").mkdir(exist_ok=True)
    (args.out / "gpu_check.log").write_text(f"gradlab GPU check: {' '.join(sys.argv)}\n")
    site = args.work / "site"
    packages = ensure_packages(REPO, site)
    check = Check(args, dry_run, began + args.budget, child_env(REPO, site, threads=2))
    if dry_run:  # --dry-run on a GPU machine too: the children see no CUDA device, so GPU tests skip
        check.env["CUDA_VISIBLE_DEVICES"] = ""
    check.record.update(environment=environment(check, packages), dry_run=dry_run, parts=args.only)
    versions = check.record["environment"]["lightning_hydra_wandb"]
    check.row("setup", "lightning, hydra, wandb", "error" if versions.startswith("error") else "ok", packages)
    reserve = sum(BENCH_SECONDS[p] for p in ("loop", "telemetry", "guard") if p in args.only) + 10
    phase1(check, args.only, reserve_s=reserve if not dry_run else 0)
    write_results(check)
    phase2(check, args.only)
    check.row("total", "wall time", f"{time.monotonic() - began:.0f} s", f"budget {args.budget:.0f} s")
    write_results(check)
    print(table(check))
    return 1 if check.failed else 0
