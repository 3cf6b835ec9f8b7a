"""Compare finished runs without a W&B account: plots (PNG) and a table from the runs' local files.

Reads each run's summary.json and csv/metrics.csv (src/reproduce/runs.py) and draws loss curves, the total
pre-clip gradient norm on a log scale, the per-layer gradient profile (network order, first and last logged
step) and the through-time profile ||dL/dh_t|| (recurrent runs); the table has the final metric, status,
largest gradient norm, share of steps clipped, steps/s and hardware. ``from_wandb`` builds the same runs from
the W&B public API for users who are online, from every logged row.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib
from omegaconf import OmegaConf

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from src.analysis import criteria
from src.reproduce.plots import layer_profiles, loss_curves, save
from src.reproduce.runs import Run, load_run, natural_key

COLUMNS = [
    "run",
    "status",
    "val/loss",
    "vs baseline",
    "verdict",
    "max grad norm",
    "clipped",
    "steps/s",
    "samples/s",
    "hardware",
    "device",
]


def collect(paths: list[Path]) -> list[Run]:
    """Run directories as given; any other directory (a multirun, a sweep) expands to every run below it."""
    runs: list[Run] = []
    for path in paths:
        found = [path / "summary.json"] if (path / "summary.json").exists() else path.rglob("summary.json")
        for summary in sorted(found, key=lambda p: natural_key(str(p))):
            run = load_run(summary.parent)
            if run is not None:
                runs.append(run)
    return runs


def label(run: Run) -> str:
    name = str(run.summary.get("name") or run.run_dir.name)
    rule = run.summary.get("clipping", "none")
    return name if rule in ("none", None) or name.endswith(rule) else f"{name} [{rule}]"


def _overrides(run: Run) -> list[str] | None:
    """The command-line overrides Hydra recorded for this run (absent for W&B runs and direct train() calls)."""
    path = run.run_dir / ".hydra" / "overrides.yaml"
    return [str(o) for o in OmegaConf.load(path)] if path.exists() else None


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_flat(value, f"{prefix}{key}."))
    return {k.rstrip("."): v for k, v in out.items()}


def _differences(runs: list[Run]) -> list[str]:
    """What tells these runs apart: the overrides they do not share, else the config values that differ."""
    overrides = [_overrides(r) for r in runs]
    if all(o is not None for o in overrides):
        shared = set.intersection(*(set(o) for o in overrides if o is not None))
        return [" ".join(x for x in o or [] if x not in shared) for o in overrides]
    flats = [_flat(r.config) for r in runs]
    keys = sorted(
        {k for f in flats for k in f if not k.startswith("paths.") and len({repr(g.get(k)) for g in flats}) > 1}
    )
    return [" ".join(f"{k}={f.get(k)}" for k in keys) for f in flats]


def labels(runs: list[Run]) -> list[str]:
    """One distinct label per run: runs of one name (a seed sweep, 1 vs 2 devices) get what differs appended."""
    names = [label(r) for r in runs]
    same: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(names):
        same[name].append(i)
    out = list(names)
    for name, idx in same.items():
        if len(idx) < 2:
            continue
        for i, diff in zip(idx, _differences([runs[i] for i in idx]), strict=True):
            out[i] = f"{name} {diff}" if diff else f"{name} ({runs[i].run_dir.name})"
    return out


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int | float) and not isinstance(value, bool):  # W&B's JSON summary may hold 3537892
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return str(value)


def _hardware(hw: dict[str, Any]) -> str:
    nodes = hw.get("num_nodes") or 1
    devices = f"{nodes} nodes x {hw.get('device_count', '?')}" if nodes > 1 else f"x{hw.get('device_count', '?')}"
    return f"{hw.get('accelerator', '?')} {devices} {hw.get('precision', '')}".strip()


def table_rows(runs: list[Run]) -> list[dict[str, str]]:
    rows = []
    for run, name in zip(runs, labels(runs), strict=True):
        s = run.summary
        val = s.get("metrics", {}).get("val/loss")
        base = s.get("baseline")
        steps = s.get("optimizer_steps") or s.get("steps") or 0
        clipped = s.get("steps_clipped")
        hw = s.get("hardware", {})
        rows.append(
            {
                "run": name,
                "status": run.status,
                "val/loss": _fmt(val),
                "vs baseline": _fmt(criteria.vs_baseline(val, base)),
                "verdict": criteria.label(val, base),
                "max grad norm": _fmt(s.get("max_grad_norm")),
                "clipped": f"{clipped / steps:.0%}" if clipped is not None and steps else "n/a",
                "steps/s": _fmt(s.get("steps_per_s"), 3),
                "samples/s": _fmt(s.get("samples_per_s"), 3),
                "hardware": _hardware(hw),
                "device": str(hw.get("device_name", "n/a")),
            }
        )
    return rows


def markdown(rows: list[dict[str, str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row[c] for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def network_order(run: Run, profile: dict[str, float]) -> dict[str, float]:
    """Layers input side first: the run's recorded ``layer_order``, else their names with numbers in order."""
    order = {name: i for i, name in enumerate(run.summary.get("layer_order") or [])}
    return dict(sorted(profile.items(), key=lambda kv: (order.get(kv[0], len(order)), natural_key(kv[0]))))


def grad_norm_plot(runs: list[Run], path: Path) -> Path | None:
    """The largest pre-clip total norm of each logging window, per run, on a log scale (a one-step spike between
    two logged steps is in it); None when no run logged it (no gradient monitor)."""
    key = "grad/norm_max_since_log"
    if not any(run.curve(key) for run in runs):
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for run, name in zip(runs, labels(runs), strict=True):
        points = run.curve(key)
        if points:
            ax.semilogy([s for s, _ in points], [v for _, v in points], label=name)
            if run.diverged_at is not None:
                ax.axvline(run.diverged_at, color="red", alpha=0.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("largest pre-clip gradient norm since the last log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)


def profile_steps(steps: list[int], count: int) -> list[int]:
    """``count`` logged steps spread evenly from the first to the last (all of them if there are fewer)."""
    if len(steps) <= count:
        return steps
    return sorted({steps[round(i * (len(steps) - 1) / (count - 1))] for i in range(count)})


def through_time_plot(runs: list[Run], path: Path) -> Path | None:
    """||dL/dh_t|| against t: per run the first and last logged profile, and some between when few runs are drawn."""
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    per_run = min(4, max(2, 6 // max(1, len(runs))))
    for run, name in zip(runs, labels(runs), strict=True):
        steps = sorted({s for k, pts in run.series.items() if k.startswith("time_grad/t=") for s, _ in pts})
        if not steps:
            continue
        for step in profile_steps(steps, per_run):
            profile = run.at_step("time_grad/t=", step)
            ts = sorted(profile, key=int)
            ax.semilogy([int(t) for t in ts], [profile[t] for t in ts], label=f"{name} @ step {step}")
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("time step t")
    ax.set_ylabel("||dL/dh_t||")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)


def compare(runs: list[Run], out: Path) -> dict[str, Path]:
    """Write the plots, table.md and table.csv into ``out``; returns what was written."""
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    names = labels(runs)
    pairs = list(zip(names, runs, strict=True))
    # a plot whose metric no run logged is left out (an MLP has no through-time profile, callbacks=none no norms)
    if any(run.curve("train/loss") for run in runs):
        written["loss"] = loss_curves({"training loss": pairs}, "train/loss", out / "loss.png")
    grad_norm = grad_norm_plot(runs, out / "grad_norm.png")
    if grad_norm is not None:
        written["grad_norm"] = grad_norm
    profiles = []
    for name, run in pairs:
        steps = sorted({s for k, pts in run.series.items() if k.startswith("grad/layer/") for s, _ in pts})
        for step in steps[:1] + steps[-1:]:
            profile = network_order(run, run.at_step("grad/layer/", step))
            if profile:
                profiles.append((f"{name} @ {step}", profile))
    if profiles:
        written["layers"] = layer_profiles({"gradient norm per layer": profiles}, "||grad||", out / "layers.png")
    through_time = through_time_plot(runs, out / "through_time.png")
    if through_time is not None:
        written["through_time"] = through_time
    rows = table_rows(runs)
    (out / "table.md").write_text(markdown(rows) + "\n")
    with (out / "table.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    written["table"] = out / "table.md"
    return written


def _final(value: Any) -> Any:
    """A W&B summary value: define_metric aggregates ({"min": .., "last": ..}) read as the final value."""
    if isinstance(value, dict) and "last" in value:
        return value["last"]
    return value


def from_wandb(path: str, group: str, api: Any = None) -> list[Run]:
    """The runs of one W&B group (``ENTITY/PROJECT``), as local runs would be read; needs network and login.

    Every history row is read (``scan_history`` pages through all of them): ``history()`` returns a sample of
    at most ``samples`` rows, in which a single-step gradient spike can vanish.
    """
    if api is None:
        import wandb

        api = wandb.Api()
    runs = []
    for remote in api.runs(path, filters={"group": group}):
        summary = {k: _final(v) for k, v in dict(remote.summary).items()}
        summary.setdefault("name", remote.name)
        summary["config"] = dict(remote.config)
        summary["hardware"] = remote.config.get("hardware", {})
        summary.setdefault("metrics", {k: v for k, v in summary.items() if k.startswith(("val/", "test/"))})
        if summary.get("status") == "diverged" and summary.get("divergence_step") is not None:
            summary.setdefault(
                "divergence", {"step": summary["divergence_step"], "reason": summary.get("divergence_reason")}
            )
        series: dict[str, list[tuple[int, float]]] = {}
        for row in remote.scan_history(page_size=1000):
            step = int(row.get("trainer/global_step", row.get("_step", 0)))
            for key, value in row.items():
                if isinstance(value, int | float) and not isinstance(value, bool) and not key.startswith("_"):
                    series.setdefault(key, []).append((step, float(value)))
        runs.append(Run(Path(remote.id), summary, series))
    return runs
