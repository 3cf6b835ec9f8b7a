"""Finished runs read back: summary.json and the CSVLogger's csv/metrics.csv, or the same from W&B."""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from src.analysis.formatting import clip_label


def natural_key(name: str) -> list[Any]:
    """Sort layer names by their numbers: blocks.2 before blocks.10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


@dataclass
class Run:
    """One finished run.

    Args:
        run_dir: its directory (a W&B run: its id).
        summary: summary.json as written by train(cfg).
        series: metric -> [(step, value)], every logged value.
    """

    run_dir: Path
    summary: dict[str, Any]
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

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
    def model(self) -> str:
        return str(self.summary.get("choices", {}).get("model", "?"))

    @property
    def clip_label(self) -> str:
        s = self.summary
        preset = s.get("choices", {}).get("clip_preset")
        return clip_label(s.get("clip"), s.get("clipping"), s.get("clip_algorithm", "norm"), preset)

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

    def steps_of(self, prefix: str) -> list[int]:
        """The steps at which any ``prefix*`` metric was logged."""
        return sorted({s for k, pts in self.series.items() if k.startswith(prefix) for s, _ in pts})

    def curve(self, key: str) -> list[tuple[int, float]]:
        return self.series.get(key, [])

    def finite(self, key: str) -> list[float]:
        return [v for _, v in self.curve(key) if math.isfinite(v)]

    def final(self, key: str) -> float | None:
        metric = self.summary.get("metrics", {}).get(key)
        if metric is not None:
            return float(metric)
        points = self.curve(key)
        return points[-1][1] if points else None

    def best(self, key: str) -> float | None:
        return min(self.finite(key), default=None)

    def mean(self, key: str) -> float | None:
        values = self.finite(key)
        return sum(values) / len(values) if values else None

    def median(self, key: str) -> float | None:
        """The upper median of the finite values."""
        values = sorted(self.finite(key))
        return values[len(values) // 2] if values else None

    def first_step_below(self, key: str, threshold: float) -> int | None:
        """The first logged step at which ``key`` is below ``threshold`` (steps-to-solve)."""
        return next((s for s, v in self.curve(key) if math.isfinite(v) and v < threshold), None)


def hydra_overrides(run_dir: Path) -> list[str] | None:
    """The command-line overrides Hydra recorded for a run (None: a W&B run or a direct ``train(cfg)`` call)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    return [str(o) for o in OmegaConf.load(path)] if path.exists() else None


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


def collect(paths: list[Path]) -> list[Run]:
    """Run directories as given; any other directory (a multirun, a sweep) expands to every run below it, in job
    order (``2_name`` before ``10_name``)."""
    runs: list[Run] = []
    for path in paths:
        found = [path / "summary.json"] if (path / "summary.json").exists() else path.rglob("summary.json")
        for summary in sorted(found, key=lambda p: natural_key(str(p))):
            run = load_run(summary.parent)
            if run is not None:
                runs.append(run)
    return runs


def _final(value: Any) -> Any:
    """A W&B summary value: define_metric aggregates ({"min": .., "last": ..}) read as the final value."""
    return value["last"] if isinstance(value, dict) and "last" in value else value


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
