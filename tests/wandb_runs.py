"""Read what an offline W&B run recorded through wandb itself, for assertions in tests.

``wandb leet inspect --json RUN_DIR`` (wandb >= 0.31: the CLI's reader of a run's ``.wandb`` transaction log)
prints every record `wandb sync` would upload as one JSON object per line: the run (config, group, job type,
tags, start time), config and summary updates, history rows, the exit record. wandb keeps that reader in step
with its own file format, so an upgrade that changes the format cannot make these helpers read garbage; an
upgrade that drops the command fails every W&B test loudly. History keys of media values (a histogram, a
table) are wandb's nested keys, written ``<key>.<field>`` (``grad_hist/network.head.bins``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any


def records(run_dir: Path) -> list[dict[str, Any]]:
    """Every record of one ``offline-run-*`` directory, in the order wandb wrote them."""
    proc = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def offline_run(run_dir: Path) -> dict[str, Any]:
    """Config, group, job type, tags, summary, history (keys and rows), start and runtime of one offline run."""
    out: dict[str, Any] = {"config": {}, "summary": {}, "history": [], "history_keys": set(), "tags": []}
    out.update(start=None, runtime=None, exit_code=None)
    for record in records(run_dir):
        kind = record["type"]
        body = record.get(kind) or {}
        if kind == "run":
            out.update(
                run_id=body.get("run_id"),
                group=body.get("run_group", ""),
                job_type=body.get("job_type", ""),
                tags=list(body.get("tags", [])),
                start=_time(body["start_time"]),
            )
            out["config"].update((body.get("config") or {}).get("update", {}))
        elif kind == "config":
            out["config"].update(body.get("update", {}))
        elif kind == "summary":
            out["summary"].update(body.get("update", {}))
        elif kind == "history":
            out["history"].append(body.get("item", {}))
            out["history_keys"].update(body.get("item", {}))
        elif kind == "exit":
            out.update(exit_code=body.get("exit_code", 0), runtime=body.get("runtime", 0))  # JSON omits zeros
    out["config"].pop("_wandb", None)
    return out
