"""Finished runs side by side without a W&B account: plots (PNG) and a table (markdown and CSV).

Loss curves, the total pre-clip gradient norm on a log scale, the per-layer gradient profile (network order,
first and last logged step), the through-time profile ||dL/dh_t|| (recurrent runs); the table has the final
metric, verdict, status, largest gradient norm, share of steps clipped, steps/s and hardware.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

from src.analysis import criteria
from src.analysis.formatting import MISSING, fmt, markdown_table
from src.analysis.plots import grad_norm_plot, layer_profiles, loss_curves, through_time_plot
from src.analysis.runs import Run, hydra_overrides, natural_key

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


def label(run: Run) -> str:
    """The run's name, with its clip label appended when a clipping rule or a clip preset set it and the name
    does not say it."""
    name = str(run.summary.get("name") or run.run_dir.name)
    chosen = (run.summary.get("clipping") or "none") != "none" or run.summary.get("choices", {}).get("clip_preset")
    return f"{name} [{run.clip_label}]" if chosen and run.clip_label not in name else name


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_flat(value, f"{prefix}{key}."))
    return {k.rstrip("."): v for k, v in out.items()}


def _differences(runs: list[Run]) -> list[str]:
    """What tells these runs apart: the overrides they do not share, else the config values that differ."""
    overrides = [hydra_overrides(r.run_dir) for r in runs]
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


def _hardware(hw: dict[str, Any]) -> str:
    nodes = hw.get("num_nodes") or 1
    devices = f"{nodes} nodes x {hw.get('device_count', '?')}" if nodes > 1 else f"x{hw.get('device_count', '?')}"
    return f"{hw.get('accelerator', '?')} {devices} {hw.get('precision', '')}".strip()


def table_rows(runs: list[Run]) -> list[dict[str, str]]:
    rows = []
    for run, name in zip(runs, labels(runs), strict=True):
        s = run.summary
        val = s.get("metrics", {}).get("val/loss")
        steps = s.get("optimizer_steps") or s.get("steps") or 0
        clipped = s.get("steps_clipped")
        hw = s.get("hardware", {})
        cells = [
            name,
            run.status,
            fmt(val),
            fmt(criteria.vs_baseline(val, run.baseline)),
            criteria.label(val, run.baseline),
            fmt(s.get("max_grad_norm")),
            f"{clipped / steps:.0%}" if clipped is not None and steps else MISSING,
            fmt(s.get("steps_per_s"), 3),
            fmt(s.get("samples_per_s"), 3),
            _hardware(hw),
            str(hw.get("device_name", MISSING)),
        ]
        rows.append(dict(zip(COLUMNS, cells, strict=True)))
    return rows


def markdown(rows: list[dict[str, str]]) -> str:
    return markdown_table(COLUMNS, [list(row.values()) for row in rows])


def network_order(run: Run, profile: dict[str, float]) -> dict[str, float]:
    """Layers input side first: the run's recorded ``layer_order``, else their names with numbers in order."""
    order = {name: i for i, name in enumerate(run.summary.get("layer_order") or [])}
    return dict(sorted(profile.items(), key=lambda kv: (order.get(kv[0], len(order)), natural_key(kv[0]))))


def compare(runs: list[Run], out: Path) -> dict[str, Path]:
    """Write the plots, table.md and table.csv into ``out``; returns what was written."""
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path | None] = {}
    pairs = list(zip(labels(runs), runs, strict=True))
    # a plot whose metric no run logged is left out (an MLP has no through-time profile, callbacks=none no norms)
    if any(run.curve("train/loss") for run in runs):
        written["loss"] = loss_curves({"training loss": pairs}, "train/loss", out / "loss.png")
    written["grad_norm"] = grad_norm_plot(pairs, out / "grad_norm.png")
    profiles = []
    for name, run in pairs:
        steps = run.steps_of("grad/layer/")
        for step in steps[:1] + steps[-1:]:
            profiles.append((f"{name} @ {step}", network_order(run, run.at_step("grad/layer/", step))))
    if profiles:
        written["layers"] = layer_profiles({"gradient norm per layer": profiles}, "||grad||", out / "layers.png")
    written["through_time"] = through_time_plot(pairs, out / "through_time.png")
    rows = table_rows(runs)
    (out / "table.md").write_text(markdown(rows) + "\n")
    with (out / "table.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    written["table"] = out / "table.md"
    return {kind: path for kind, path in written.items() if path is not None}
