"""Read finished runs back: summary.json and the CSVLogger's csv/metrics.csv of every job of a multirun."""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def natural_key(name: str) -> list[Any]:
    """Sort layer names by their numbers: blocks.2 before blocks.10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


@dataclass
class Run:
    run_dir: Path
    summary: dict[str, Any]
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # metric -> [(step, value)]

    @property
    def config(self) -> dict[str, Any]:
        return self.summary.get("config", {})

    def cfg(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "unknown"))

    @property
    def diverged_at(self) -> int | None:
        div = self.summary.get("divergence")
        return int(div["step"]) if div and div.get("step") is not None else None

    @property
    def baseline(self) -> float | None:
        return self.summary.get("baseline")

    def at_step(self, prefix: str, step: int = 0) -> dict[str, float]:
        """Every ``prefix<name>`` metric logged at ``step``, by name in network order."""
        out = {}
        for key, points in self.series.items():
            if key.startswith(prefix):
                values = [v for s, v in points if s == step]
                if values:
                    out[key[len(prefix) :]] = values[0]
        return dict(sorted(out.items(), key=lambda kv: natural_key(kv[0])))

    def curve(self, key: str) -> list[tuple[int, float]]:
        return self.series.get(key, [])

    def final(self, key: str) -> float | None:
        metric = self.summary.get("metrics", {}).get(key)
        if metric is not None:
            return float(metric)
        points = self.curve(key)
        return points[-1][1] if points else None

    def best(self, key: str) -> float | None:
        values = [v for _, v in self.curve(key) if math.isfinite(v)]
        return min(values) if values else None

    def first_step_below(self, key: str, threshold: float) -> int | None:
        """The first logged step at which ``key`` is below ``threshold`` (steps-to-solve)."""
        for step, value in self.curve(key):
            if math.isfinite(value) and value < threshold:
                return step
        return None

    def mean(self, key: str) -> float | None:
        values = [v for _, v in self.curve(key) if math.isfinite(v)]
        return sum(values) / len(values) if values else None


def read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    if not path.exists():
        return series
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if key in ("step", "epoch") or value in (None, ""):
                    continue
                series.setdefault(key, []).append((step, float(value)))
    return series


def load_run(run_dir: Path) -> Run | None:
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        return None
    return Run(run_dir, json.loads(summary_path.read_text()), read_metrics(run_dir / "csv" / "metrics.csv"))


def load_sweep(sweep_dir: Path) -> list[Run]:
    """Every finished job of a multirun directory, in job order (the ``<num>_<name>`` subdirectories)."""
    if not sweep_dir.is_dir():
        return []
    jobs = sorted(
        (d for d in sweep_dir.iterdir() if d.is_dir() and d.name.split("_")[0].isdigit()),
        key=lambda d: int(d.name.split("_")[0]),
    )
    return [run for run in (load_run(d) for d in jobs) if run is not None]
