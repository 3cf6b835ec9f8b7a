"""Compare finished runs without a W&B account: plots (PNG) and a table from the runs' local files.

Reads each run's summary.json and csv/metrics.csv (src/reproduce/runs.py) and draws loss curves, the total
pre-clip gradient norm on a log scale, the per-layer gradient profile (network order, first and last logged
step) and the through-time profile ||dL/dh_t|| (recurrent runs); the table has the final metric, status,
largest gradient norm, share of steps clipped, steps/s and hardware. ``from_wandb`` builds the same runs from
the W&B public API for users who are online (not exercised here: no network).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from src.reproduce.plots import layer_profiles, loss_curves, save
from src.reproduce.runs import Run, load_run, natural_key

COLUMNS = ["run", "status", "val/loss", "vs baseline", "max grad norm", "clipped", "steps/s", "hardware"]


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


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return str(value)


def table_rows(runs: list[Run]) -> list[dict[str, str]]:
    rows = []
    for run in runs:
        s = run.summary
        val = s.get("metrics", {}).get("val/loss")
        base = s.get("baseline")
        steps = s.get("optimizer_steps") or s.get("steps") or 0
        clipped = s.get("steps_clipped")
        hw = s.get("hardware", {})
        rows.append(
            {
                "run": label(run),
                "status": run.status,
                "val/loss": _fmt(val),
                "vs baseline": _fmt(val / base) if val is not None and base else "n/a",
                "max grad norm": _fmt(s.get("max_grad_norm")),
                "clipped": f"{clipped / steps:.0%}" if clipped is not None and steps else "n/a",
                "steps/s": _fmt(s.get("steps_per_s"), 3),
                "hardware": f"{hw.get('accelerator', '?')} x{hw.get('device_count', '?')} {hw.get('precision', '')}",
            }
        )
    return rows


def markdown(rows: list[dict[str, str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row[c] for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def grad_norm_plot(runs: list[Run], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for run in runs:
        points = run.curve("grad/norm_total_preclip")
        if points:
            ax.semilogy([s for s, _ in points], [v for _, v in points], label=label(run))
            if run.diverged_at is not None:
                ax.axvline(run.diverged_at, color="red", alpha=0.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("total gradient norm (pre-clip)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)


def through_time_plot(runs: list[Run], path: Path) -> Path | None:
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for run in runs:
        steps = sorted({s for k, pts in run.series.items() if k.startswith("time_grad/t=") for s, _ in pts})
        if not steps:
            continue
        for step in (steps[0], steps[-1]):
            profile = run.at_step("time_grad/t=", step)
            ts = sorted(profile, key=int)
            ax.semilogy([int(t) for t in ts], [profile[t] for t in ts], label=f"{label(run)} @ step {step}")
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
    pairs = [(label(r), r) for r in runs]
    written["loss"] = loss_curves({"training loss": pairs}, "train/loss", out / "loss.png")
    written["grad_norm"] = grad_norm_plot(runs, out / "grad_norm.png")
    profiles = []
    for run in runs:
        steps = sorted({s for k, pts in run.series.items() if k.startswith("grad/layer/") for s, _ in pts})
        for step in steps[:1] + steps[-1:]:
            profile = run.at_step("grad/layer/", step)
            if profile:
                profiles.append(
                    (f"{label(run)} @ {step}", dict(sorted(profile.items(), key=lambda kv: natural_key(kv[0]))))
                )
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


def from_wandb(path: str, group: str) -> list[Run]:
    """The runs of one W&B group (``ENTITY/PROJECT``), as local runs would be read; needs network and login."""
    import wandb

    runs = []
    for remote in wandb.Api().runs(path, filters={"group": group}):
        summary = dict(remote.summary)
        summary.setdefault("name", remote.name)
        summary["config"] = dict(remote.config)
        summary["hardware"] = remote.config.get("hardware", {})
        summary.setdefault("metrics", {k: v for k, v in summary.items() if k.startswith("val/")})
        history = remote.history(samples=2000, pandas=False)
        series: dict[str, list[tuple[int, float]]] = {}
        for row in history:
            step = int(row.get("trainer/global_step", row.get("_step", 0)))
            for key, value in row.items():
                if isinstance(value, int | float) and not key.startswith("_"):
                    series.setdefault(key, []).append((step, float(value)))
        runs.append(Run(Path(remote.id), summary, series))
    return runs
