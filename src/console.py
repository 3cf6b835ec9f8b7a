"""What a run prints: the resolved config as a tree at start, a plain-words summary at the end."""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.tree import Tree

CONSOLE = Console(soft_wrap=True)  # long paths stay on one line, copy-pasteable
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
    CONSOLE.print(tree)


def _fmt(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.4g}" if math.isfinite(x) else str(x)


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
    rule = summary.get("clipping", "none")
    if rule != "none":
        clipping = f"clipping={rule}"
    elif summary["clip"] is None:
        clipping = "no clipping"
    else:
        clipping = f"clip={summary['clip']} ({summary['clip_algorithm']})"
    lines.append(
        f"  {summary['steps']} optimizer steps in {summary['wall_time_s']:.1f} s "
        f"({_fmt(summary.get('steps_per_s'))} steps/s), {clipping}"
    )
    val = metrics.get("val/loss")
    baseline = summary.get("baseline")
    if val is not None and baseline is not None and math.isfinite(baseline):
        verdict = "beats it" if summary.get("beats_baseline") else "does NOT beat it"
        lines.append(
            f"  val/loss {_fmt(val)} vs trivial baseline {_fmt(baseline)} ({summary['baseline_rule']}): "
            f"{100 * val / baseline:.1f}% of the baseline, {verdict}"
        )
    if summary.get("guard_event_count"):
        lines.append(
            f"  divergence guard: {summary['guard_event_count']} events (spikes/non-finite), "
            f"{summary.get('skipped_steps', 0)} steps skipped; details in summary.json (guard_events)"
        )
    if "test/loss" in metrics:
        lines.append(f"  test/loss {_fmt(metrics['test/loss'])}")
    lines.append(f"  run directory: {summary['run_dir']} (summary.json, csv/metrics.csv, checkpoints/)")
    if summary.get("wandb_dir"):
        lines.append(f"  W&B {summary.get('wandb_mode')} run: {summary['wandb_dir']}")
        if summary.get("wandb_mode") == "offline":
            lines.append(f"    upload later with: wandb sync {summary['wandb_dir']}")
    lines.append(f"  compare runs: python scripts/compare.py {summary['run_dir']} OTHER_RUN_DIR ...")
    CONSOLE.print("\n".join(lines), highlight=False)
