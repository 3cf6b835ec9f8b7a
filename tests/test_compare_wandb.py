"""compare.py --wandb reads every history row (scan_history), so a single-step spike cannot vanish.

The W&B public API needs a network; the one thing faked here is that call: a stand-in ``Api`` serves a real
offline run (its summary, config and every history row, read through wandb's own reader) the way
``wandb.Api().runs(...)`` would. ``history()`` on it fails: it returns a sample of the rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from src.analysis.compare import compare, table_rows
from src.analysis.runs import collect, from_wandb
from src.train import train
from tests.wandb_runs import offline_run


class RemoteRun:
    """What ``wandb.Api().runs()`` yields, for one offline run: id, name, summary, config, history rows."""

    def __init__(self, recorded: dict[str, Any], name: str) -> None:
        self.id, self.name = recorded["run_id"], name
        self.summary, self.config = recorded["summary"], recorded["config"]
        self._rows = recorded["history"]

    def scan_history(self, keys: Any = None, page_size: int = 1000, min_step: Any = None, max_step: Any = None):
        yield from self._rows

    def history(self, *args: Any, **kwargs: Any):
        raise AssertionError("history() returns a sample of the rows; a spike can fall out of it")


class Api:
    def __init__(self, runs: list[RemoteRun]) -> None:
        self._runs, self.queries = runs, []

    def runs(self, path: str, filters: dict[str, Any] | None = None) -> list[RemoteRun]:
        self.queries.append((path, filters))
        return self._runs


def test_wandb_comparison_reads_every_row_and_keeps_a_single_step_spike(make_cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    # one bad batch (inputs x 1000) at step 24 of 40: a one-step gradient spike, logged as every step is
    cfg = make_cfg(
        "logger=wandb",
        "model=mlp",
        "model.depth=3",
        "trainer.max_steps=40",
        "trainer.log_every_n_steps=1",
        "data.corrupt_every=25",
        "data.batches_per_epoch=40",
    )
    local = train(cfg)
    (wandb_dir,) = Path(cfg.paths.output_dir, "wandb").glob("offline-run-*")
    api = Api([RemoteRun(offline_run(wandb_dir), local["name"])])
    (remote,) = from_wandb("me/gradlab", "g", api=api)
    assert api.queries == [("me/gradlab", {"group": "g"})]

    (on_disk,) = collect([Path(cfg.paths.output_dir)])
    curve = remote.curve("grad/norm_total_preclip")
    assert curve == on_disk.curve("grad/norm_total_preclip") and len(curve) == 40  # every step, as the CSV has it
    values = dict(curve)
    assert values[24] > 3 * max(values[23], values[25])  # the bad batch: one step above both neighbours
    assert max(values.values()) == remote.summary["max_grad_norm"] == local["max_grad_norm"]

    # the W&B summary's define_metric aggregates read as final values: the same table row as from local files
    wandb_row, local_row = table_rows([remote])[0], table_rows([on_disk])[0]
    for column in ("status", "val/loss", "vs baseline", "max grad norm", "clipped"):
        assert wandb_row[column] == local_row[column], column
    assert (compare([remote], tmp_path)["grad_norm"]).stat().st_size > 0
