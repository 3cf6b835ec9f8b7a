"""Figures of the reproduction report (matplotlib, Agg): one PNG per experiment under docs/img/."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from src.reproduce.runs import Run


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


LINESTYLES = {"none": "--", "autoclip": ":"}  # by the label's last word; anything else solid


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
                kwargs = {"color": colours[model], "linestyle": LINESTYLES.get(rule.split(" ")[0], "-")}
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
