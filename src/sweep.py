"""Searches with Hydra's Optuna sweeper: the objective a job returns, and the study's report at the end.

The objective is the run's final ``val/loss`` (lower is better). A run that diverged, or whose loss is not a
finite number, returns +inf instead: Optuna records it as a completed trial that ranks below every finite one
(TPE then samples away from that region; ``best_trial`` never picks it while any trial trained). NaN must not
reach the sweeper: optuna 2.10's ``study.tell(trial, values=[nan])`` raises, and hydra-optuna-sweeper 1.3.0's
fallback, ``study.tell(trial, state=FAIL, values=[nan])``, raises again (FAIL takes no values), so one NaN
would end the whole sweep and leave that trial RUNNING in the study's storage.

``StudyReport`` (a Hydra callback, conf/train.yaml) runs after any multirun; when the sweeper wrote
``optimization_results.yaml`` it adds the best trial's job and run directory to it, writes every trial as a
table (``trials.csv``, ``trials.md``) beside it, and prints the table and the best trial.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from src.analysis.formatting import fmt, markdown_table
from src.analysis.runs import hydra_overrides
from src.console import wide_console

OBJECTIVE = "val/loss"
RESULTS = "optimization_results.yaml"


def objective(summary: dict[str, Any]) -> float:
    """What a trial reports to the sweeper: final val/loss, +inf for a diverged or non-finite run."""
    value = (summary.get("metrics") or {}).get(OBJECTIVE)
    if summary.get("status") == "diverged" or value is None or not math.isfinite(value):
        return math.inf
    return float(value)


def _job_number(job_dir: Path, default: int) -> int:
    hydra_yaml = job_dir / ".hydra" / "hydra.yaml"
    if hydra_yaml.exists():
        return int(OmegaConf.load(hydra_yaml).hydra.job.num)
    return default


def _overrides(job_dir: Path) -> dict[str, str]:
    """The job's overrides as Hydra recorded them, key -> value text (what the sweeper wrote: ``f"{k}={v}"``)."""
    parsed = OverridesParser.create().parse_overrides(hydra_overrides(job_dir) or [])
    return {o.key_or_group: o.get_value_element_as_str() for o in parsed}


def _value(text: str | None) -> Any:
    """An override's value text as the number it is, when it is one (for the table; matching uses the text)."""
    if text is None:
        return None
    try:
        return int(text) if text.lstrip("-").isdigit() else float(text)
    except ValueError:
        return text


def trials(sweep_dir: Path, params: list[str]) -> list[dict[str, Any]]:
    """One row per job directory of the sweep, in job order: the searched values, objective, status, run dir."""
    rows = []
    job_dirs = sorted(p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir())
    for i, job_dir in enumerate(job_dirs):
        summary_path = job_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        given = _overrides(job_dir)
        row: dict[str, Any] = {"job": _job_number(job_dir, i), "_given": given}
        row.update({p: _value(given.get(p)) for p in params})
        row.update(
            {
                OBJECTIVE: objective(summary) if summary else None,
                "status": summary.get("status", "failed (no summary.json)"),
                "divergence_step": summary.get("divergence_step"),
                "steps": summary.get("steps"),
                "max_grad_norm": summary.get("max_grad_norm"),
                "run_dir": summary.get("run_dir") or str(job_dir.resolve()),
            }
        )
        rows.append(row)
    return sorted(rows, key=lambda r: r["job"])


def best_row(rows: list[dict[str, Any]], best_params: dict[str, Any]) -> dict[str, Any] | None:
    """The job that ran the study's best parameters (None: the best trial is from an earlier sweep of a stored
    study, not in this directory)."""
    for row in rows:
        if all(row["_given"].get(k) == str(v) for k, v in best_params.items()):
            return row
    return None


def markdown(rows: list[dict[str, Any]]) -> str:
    return markdown_table(list(rows[0]) if rows else [], [[fmt(v) for v in r.values()] for r in rows]) + "\n"


def report(sweep_dir: Path, console: Console | None = None) -> dict[str, Any] | None:
    """Complete the sweeper's optimization_results.yaml, write trials.csv/.md; None when there is no study."""
    results_path = sweep_dir / RESULTS
    if not results_path.exists():
        return None
    results = OmegaConf.to_container(OmegaConf.load(results_path))
    assert isinstance(results, dict)
    best_params = dict(results.get("best_params") or {})
    rows = trials(sweep_dir, list(best_params))
    best = best_row(rows, best_params) if best_params else None
    for row in rows:
        del row["_given"]
    results.update(
        {
            "objective": OBJECTIVE + " (diverged or non-finite: inf)",
            "n_trials": len(rows),
            "n_diverged": sum(r["status"] == "diverged" for r in rows),
            "best_job": best["job"] if best else None,
            "best_run_dir": best["run_dir"] if best else None,
            "trials_table": "trials.csv",
        }
    )
    OmegaConf.save(OmegaConf.create(results), results_path)
    if rows:
        with (sweep_dir / "trials.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        (sweep_dir / "trials.md").write_text(markdown(rows))
    _print(rows, results, best, console or wide_console())
    return results


def _print(rows: list[dict[str, Any]], results: dict[str, Any], best: dict[str, Any] | None, console: Console) -> None:
    table = Table(title=f"Optuna study: {len(rows)} trials, {results['n_diverged']} diverged")
    for column in rows[0] if rows else []:
        table.add_column(column, overflow="fold")
    for row in rows:
        style = "bold green" if best is row else ("red" if row["status"] == "diverged" else None)
        table.add_row(*(fmt(v) for v in row.values()), style=style)
    console.print(table)
    if "best_params" not in results:  # multi-objective: the sweeper wrote a Pareto front
        console.print(f"Pareto solutions: {results.get('solutions')}")
        return
    params = ", ".join(f"{k}={fmt(v)}" for k, v in results["best_params"].items())
    where = f"job {best['job']}, {best['run_dir']}" if best else "a trial of an earlier sweep of this stored study"
    console.print(f"best trial: {params}: {OBJECTIVE} {fmt(results['best_value'])} ({where})", highlight=False)


class StudyReport(Callback):
    """Hydra callback: after a multirun, report the Optuna study if the sweeper wrote one. No arguments."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        report(Path(config.hydra.sweep.dir))
