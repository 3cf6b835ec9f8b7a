"""What a run prints: the resolved config as a tree at start, a plain-words summary at the end."""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.tree import Tree

from src.analysis import criteria
from src.analysis.formatting import clip_label, fmt

CONSOLE = Console(soft_wrap=True)  # long paths stay on one line, copy-pasteable
LOG_WIDTH = 100_000  # no terminal (a log file, a pipe): rich would cut every line at 80 columns


def wide_console() -> Console:
    """The console for trees and tables: the terminal's width, or no limit when stdout is a file or a pipe."""
    return CONSOLE if CONSOLE.is_terminal else Console(soft_wrap=True, width=LOG_WIDTH)


ORDER = ("model", "data", "optimizer", "scheduler", "clipping", "trainer", "callbacks", "logger")


def print_config_tree(cfg: DictConfig) -> None:
    tree = Tree("[bold]config[/bold]")
    resolved = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(resolved, dict)
    top = {k: v for k, v in resolved.items() if not isinstance(v, dict)}
    tree.add(", ".join(f"{k}={v}" for k, v in top.items()))
    for group in ORDER:
        node = resolved.get(group)
        if node:
            branch = tree.add(f"[bold]{group}[/bold]")
            for line in OmegaConf.to_yaml(node).rstrip().splitlines():
                branch.add(line)
    wide_console().print(tree)


_SPIKES = {"grad_spike": ("gradient spike", "gradient norm"), "loss_spike": ("loss spike", "loss")}
_ACTIONS = {"warn": "no action, logged only", "skip": "those steps skipped", "stop": "the run stopped"}


def guard_lines(summary: dict[str, Any]) -> list[str]:
    """The divergence guard's events in words: what, how many, how large, and what was done about them."""
    lines = []
    settings = summary.get("guard_actions", {})
    for group in summary.get("guard_summary", []):
        count, reason = group["count"], group["reason"]
        setting = "on_spike" if group["kind"] == "spike" else "on_nonfinite"
        done = "; ".join(_ACTIONS.get(a, a) for a in group["actions"])
        how = f"{done} ({setting}={settings.get(setting, '?')})"
        if reason in _SPIKES:
            noun, of = _SPIKES[reason]
            largest = (
                f", largest {group['largest_ratio']:.3g}x at step {group['largest_at_step']}"
                if group.get("largest_ratio") is not None
                else ""
            )
            lines.append(
                f"  divergence guard: {count} {noun}{'s' if count > 1 else ''} > {group['threshold']:g}x the recent "
                f"median {of}{largest}, first at step {group['first_step']}; {how}"
            )
        else:
            first = group["first_step"]
            steps = f" on {count} steps from step {first}" if count > 1 else f" at step {first}"
            lines.append(f"  divergence guard: {reason.replace('_', ' ')}{steps}; {how}")
    if summary.get("skipped_steps"):
        n = summary["skipped_steps"]
        lines.append(f"  {n} optimizer step{'s' if n > 1 else ''} skipped in all (weights and optimizer state kept)")
    return lines


def print_run_summary(summary: dict[str, Any]) -> None:
    metrics = summary.get("metrics", {})
    status = summary["status"]
    colour = {"completed": "green", "diverged": "red"}.get(status, "yellow")
    lines = [f"[bold {colour}]gradlab run {status}[/bold {colour}]: {summary['name']}"]
    if status == "diverged":
        div = summary.get("divergence") or {}
        lines.append(
            f"  training diverged at step {div.get('step', '?')} ({div.get('reason', 'non-finite')}); "
            "this is a recorded result, not a crash (exit code 0)"
        )
    preset = summary.get("choices", {}).get("clip_preset")
    clipping = clip_label(summary["clip"], summary.get("clipping"), summary.get("clip_algorithm", "norm"), preset)
    lines.append(
        f"  {summary['steps']} optimizer steps in {summary['wall_time_s']:.1f} s "
        f"({fmt(summary.get('steps_per_s'))} steps/s), {clipping}"
    )
    val = metrics.get("val/loss")
    baseline = summary.get("baseline")
    if val is not None and baseline is not None and math.isfinite(baseline):
        best = summary.get("best_val_loss")
        solved = summary.get("steps_to_solve")
        extra = f"; best {fmt(best)}" if best is not None and best < val else ""
        extra += f"; first solved at step {solved}" if solved is not None else ""
        ratio = f"{val / baseline:.3g}x the baseline" if math.isfinite(val) else "non-finite"
        lines.append(
            f"  val/loss {fmt(val)} vs trivial baseline {fmt(baseline)} ({summary['baseline_rule']}): "
            f"{ratio}, {criteria.verdict(val, baseline)}{extra}"
        )
    if "max_grad_norm" in summary:
        lines.append(
            f"  largest pre-clip gradient norm {fmt(summary['max_grad_norm'])}; "
            f"{summary.get('steps_clipped', 0)} of {summary.get('optimizer_steps', 0)} steps clipped"
        )
    lines += guard_lines(summary)
    if "test/loss" in metrics:
        lines.append(f"  test/loss {fmt(metrics['test/loss'])}")
    lines.append(f"  run directory: {summary['run_dir']} (summary.json, csv/metrics.csv, checkpoints/)")
    if summary.get("wandb_dir"):
        lines.append(f"  W&B {summary.get('wandb_mode')} run: {summary['wandb_dir']}")
        if summary.get("wandb_mode") == "offline":
            lines.append(f"    upload later with: wandb sync {summary['wandb_dir']}")
    lines.append(f"  compare runs: python scripts/compare.py {summary['run_dir']} OTHER_RUN_DIR ...")
    CONSOLE.print("\n".join(lines), highlight=False)
