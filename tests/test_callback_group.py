"""CallbackGroup: one Lightning dispatch per hook for a run's callbacks, the same numbers as without it."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ModelSummary, ProgressBar

import src.build
from src.build import build
from src.callbacks import DivergenceGuard, FiniteModelCheckpoint, GradNormMonitor, WeightMonitor
from src.callbacks.group import CallbackGroup, callback_states, group_callbacks
from src.train import train

RUN = ["callbacks=default", "logger=csv", "model=rnn", "model.hidden_size=8", "trainer.max_steps=12"]
RUN += ["trainer.enable_progress_bar=true", "trainer.enable_model_summary=true", "test=false"]


class Counting(Callback):
    """Counts the calls of the two hooks it overrides."""

    def __init__(self, name: str) -> None:
        self.name, self.calls = name, {"on_train_batch_end": 0, "on_fit_start": 0}

    @property
    def state_key(self) -> str:
        return f"Counting[{self.name}]"

    def on_train_batch_end(self, *args: Any) -> None:
        self.calls["on_train_batch_end"] += 1

    def on_fit_start(self, *args: Any) -> None:
        self.calls["on_fit_start"] += 1


def rows(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv without the wall-clock columns (throughput differs between two runs of the same math)."""
    with open(run_dir / "csv" / "metrics.csv", newline="") as file:
        return [{k: v for k, v in r.items() if not k.startswith("throughput/")} for r in csv.DictReader(file)]


def test_a_run_groups_its_callbacks_and_logs_the_same_numbers(make_cfg, monkeypatch):
    trainer = build(make_cfg(*RUN)).trainer
    groups = [c for c in trainer.callbacks if isinstance(c, CallbackGroup)]
    assert len(groups) == 1
    members = {type(c) for c in groups[0].callbacks}
    assert {GradNormMonitor, WeightMonitor, DivergenceGuard} <= members
    # what the Trainer finds by type stays where it looks
    assert isinstance(trainer.checkpoint_callback, FiniteModelCheckpoint) and trainer.progress_bar_callback
    assert not any(isinstance(c, (ModelCheckpoint, ProgressBar)) for c in groups[0].callbacks)

    grouped_cfg = make_cfg(*RUN)
    grouped = train(grouped_cfg)
    monkeypatch.setattr(src.build, "group_callbacks", list)  # the same run, every callback on its own
    plain_cfg = make_cfg(*RUN)
    assert not any(isinstance(c, CallbackGroup) for c in build(plain_cfg).trainer.callbacks)
    plain = train(plain_cfg)
    grouped_rows = rows(Path(grouped_cfg.paths.output_dir))
    assert grouped_rows == rows(Path(plain_cfg.paths.output_dir))
    assert [int(r["step"]) for r in grouped_rows] == [0, 4, 9, 12]  # log_every_n_steps=5, then validation after the fit
    same = ("max_grad_norm", "steps_clipped", "skipped_steps", "guard_event_count", "status", "best_val_loss")
    assert {k: grouped[k] for k in same} == {k: plain[k] for k in same}


def summaries(trainer: Any) -> tuple[int, ...]:
    """Model-summary callbacks (on the Trainer's own list, inside its group)."""
    grouped = [m for c in trainer.callbacks if isinstance(c, CallbackGroup) for m in c.callbacks]
    return tuple(sum(isinstance(c, ModelSummary) for c in where) for where in (trainer.callbacks, grouped))


def test_the_model_summary_is_a_member_of_the_group_and_prints_once(make_cfg, capfd):
    assert summaries(build(make_cfg(*RUN)).trainer) == (0, 1)  # not dispatched on every step on its own
    train(make_cfg(*RUN))
    assert capfd.readouterr().out.count("Total params") == 1
    assert summaries(build(make_cfg(*RUN, "trainer.enable_model_summary=false")).trainer) == (0, 0)
    assert summaries(build(make_cfg(*RUN, "debug=profiler")).trainer) == (1, 0)  # Lightning's own


def test_each_hook_reaches_the_members_that_override_it():
    a, b = Counting("a"), Counting("b")
    guard = DivergenceGuard()
    group = CallbackGroup([a, guard, b])
    group.on_train_batch_end(None, None, None, None, 0)
    group.on_fit_start(None, None)
    assert a.calls == b.calls == {"on_train_batch_end": 1, "on_fit_start": 1}
    assert group.on_before_backward == guard.on_before_backward  # one member: its own method, no wrapper
    assert type(group).on_validation_start is Callback.on_validation_start  # nobody overrides it: a no-op
    assert "on_validation_start" not in vars(group)
    assert group_callbacks([a]) == [a]  # nothing to gain from a group of one
    checkpoint = ModelCheckpoint()
    assert group_callbacks([checkpoint, a, b])[0] is checkpoint


def test_members_lightning_looks_up_or_with_one_key_are_refused():
    with pytest.raises(ValueError, match="ModelCheckpoint cannot be grouped"):
        CallbackGroup([ModelCheckpoint(), Counting("a")])
    with pytest.raises(ValueError, match="share a state_key"):
        CallbackGroup([Counting("a"), Counting("a")])


def guard_with_history(norms: list[float]) -> DivergenceGuard:
    guard = DivergenceGuard(window=4)
    for value in norms:
        guard._remember(value, 2 * value)
    return guard


def test_member_state_round_trips_grouped_and_from_an_ungrouped_checkpoint():
    saved = guard_with_history([1.0, 2.0, 3.0, 4.0, 5.0])  # window 4: 1.0 has left it
    state = CallbackGroup([saved, Counting("a")]).state_dict()
    assert state == {"DivergenceGuard": {"norms": [2.0, 3.0, 4.0, 5.0], "losses": [4.0, 6.0, 8.0, 10.0],
                                         "seen": 5, "skipped": 0}}  # fmt: skip
    restored = DivergenceGuard(window=4)
    group = CallbackGroup([restored, Counting("a")])
    group.load_state_dict(state)
    assert list(restored._norms) == [2.0, 3.0, 4.0, 5.0] and restored._seen == 5
    fewer = DivergenceGuard(window=4)  # a resume with another set of members still restores the ones it has
    CallbackGroup([fewer, Counting("other")]).load_state_dict(state)
    assert list(fewer._losses) == [4.0, 6.0, 8.0, 10.0]
    assert group.state_key == CallbackGroup([Counting("c"), Counting("d")]).state_key == "CallbackGroup"
    saved_checkpoint = {"callbacks": {group.state_key: state, "ModelCheckpoint{...}": {"best": 1.0}}}
    assert callback_states(saved_checkpoint) == {**state, "ModelCheckpoint{...}": {"best": 1.0}}

    # a checkpoint written before grouping: the guard's state at the top level, as an older (window,) tensor
    old = DivergenceGuard(window=4)
    legacy = {"norms": torch.tensor([7.0, math.nan, 5.0, 6.0]), "losses": torch.tensor([1.0, 2.0, 3.0, 4.0])}
    checkpoint = {"callbacks": {"DivergenceGuard": {**legacy, "seen": 3, "skipped": 1}}}
    CallbackGroup([old, Counting("b")]).on_load_checkpoint(None, None, checkpoint)  # type: ignore[arg-type]
    assert list(old._norms) == [7.0, 5.0, 6.0] and old.skipped_steps == 1
    assert checkpoint["callbacks"]["DivergenceGuard"]["norms"].isnan().any()  # the checkpoint itself untouched
