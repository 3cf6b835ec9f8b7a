"""Figures of runs (matplotlib, Agg): curves, per-layer and through-time profiles, for compare and the report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from src.analysis.runs import Run


def save(fig: plt.Figure, path: Path, bottom: float = 0.0) -> Path:
    """Write the figure; ``bottom`` keeps that share of the height free for a figure-level legend."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=(0.0, bottom, 1.0, 1.0))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def layer_profiles(panels: dict[str, list[tuple[str, dict[str, float]]]], ylabel: str, path: Path) -> Path:
    """Per-layer values (input layer first), one panel per key, one line per labelled profile; log scale."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (title, profiles) in zip(axes[0], panels.items(), strict=True):
        for label, profile in profiles:
            values = [abs(v) if v == v else float("nan") for v in profile.values()]
            ax.semilogy(range(1, len(values) + 1), values, marker=".", label=label)
        ax.set_title(title)
        ax.set_xlabel("layer (1 = input side)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, path)


LINESTYLES = {"noclip": "--", "autoclip": ":"}  # by the clip label; anything else solid


def loss_curves(
    panels: dict[str, Sequence[tuple[str, Run]]], key: str, path: Path, *, relative: bool = False, ylabel: str = ""
) -> Path:
    """``key`` against the step, one panel per title, one line per run; the trivial baseline dotted.

    With ``relative`` the labels read "<model> <clipping>": one colour per model, one line style per clipping.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5), squeeze=False)
    colours: dict[str, str] = {}
    for ax, (title, runs) in zip(axes[0], panels.items(), strict=True):
        for label, run in runs:
            points = run.curve(key)
            if not points:
                continue
            scale = run.baseline if relative and run.baseline else 1.0
            kwargs = {}
            if relative:
                model, rule = label.split(" ", 1)
                colours.setdefault(model, f"C{len(colours) % 10}")
                kwargs = {"color": colours[model], "linestyle": LINESTYLES.get(rule, "-")}
            ax.plot([s for s, _ in points], [v / scale for _, v in points], label=label, **kwargs)
            if run.status == "diverged" and run.diverged_at is not None:
                ax.axvline(run.diverged_at, color="red", alpha=0.2)
        baselines = {r.baseline for _, r in runs if r.baseline}
        if relative:
            ax.axhline(1.0, color="k", linestyle=":", label="trivial baseline")
        elif len(baselines) == 1:
            ax.axhline(baselines.pop(), color="k", linestyle=":", label="trivial baseline")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ylabel or key)
        ax.grid(True, alpha=0.3)
        if not relative:
            ax.legend(fontsize=7)
    if relative:
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=7)
    return save(fig, path, bottom=0.22 if relative else 0.0)


def labelled(fig: plt.Figure, ax: plt.Axes, xlabel: str, ylabel: str, path: Path) -> Path:
    """One panel's axis labels, grid and legend, then the figure saved."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)


def grad_norm_plot(runs: list[tuple[str, Run]], path: Path) -> Path | None:
    """The largest pre-clip total norm of each logging window, per run, on a log scale (a one-step spike between
    two logged steps is in it); None when no run logged it (no gradient monitor)."""
    key = "grad/norm_max_since_log"
    if not any(run.curve(key) for _, run in runs):
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, run in runs:
        points = run.curve(key)
        if points:
            ax.semilogy([s for s, _ in points], [v for _, v in points], label=name)
            if run.diverged_at is not None:
                ax.axvline(run.diverged_at, color="red", alpha=0.2)
    return labelled(fig, ax, "optimizer step", "largest pre-clip gradient norm since the last log", path)


def spread(steps: list[int], count: int) -> list[int]:
    """``count`` steps spread evenly from the first to the last (all of them if there are fewer)."""
    if len(steps) <= count:
        return steps
    return sorted({steps[round(i * (len(steps) - 1) / (count - 1))] for i in range(count)})


def through_time_plot(runs: list[tuple[str, Run]], path: Path) -> Path | None:
    """||dL/dh_t|| against t: per run the first and last logged profile, and some between when few runs are drawn;
    None when no run logged one (feed-forward models)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    per_run = min(4, max(2, 6 // max(1, len(runs))))
    for name, run in runs:
        for step in spread(run.steps_of("time_grad/t="), per_run):
            profile = run.at_step("time_grad/t=", step)
            ts = sorted(profile, key=int)
            ax.semilogy([int(t) for t in ts], [profile[t] for t in ts], label=f"{name} @ step {step}")
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    return labelled(fig, ax, "time step t", "||dL/dh_t||", path)


def sweep_plot(lines: dict[str, list[tuple[float, float, float, float]]], xlabel: str, ylabel: str, path: Path) -> Path:
    """One line per label through (x, median) with the min–max over seeds shaded; log-log axes."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in lines.items():
        points = sorted(points)
        xs = [p[0] for p in points]
        ax.loglog(xs, [p[1] for p in points], marker="o", label=label)
        ax.fill_between(xs, [p[2] for p in points], [p[3] for p in points], alpha=0.2)
    return labelled(fig, ax, xlabel, ylabel, path)


def series_plot(
    curves: list[tuple[str, list[int], list[float], int | None]], xlabel: str, ylabel: str, path: Path
) -> Path:
    """One line per (label, steps, values, divergence step) on a log y axis; a red line where a run diverged."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, steps, values, diverged_at in curves:
        ax.semilogy(steps, values, label=label)
        if diverged_at is not None:
            ax.axvline(diverged_at, color="red", alpha=0.2)
    return labelled(fig, ax, xlabel, ylabel, path)
