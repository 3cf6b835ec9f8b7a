"""What the callbacks promise besides their numbers: documented arguments and the run-summary protocol."""

from __future__ import annotations

import inspect

import lightning as L
import pytest

import src.callbacks as callbacks
from src.callbacks import DivergenceGuard, FiniteModelCheckpoint, GradNormMonitor, RunTotals, collect_run_totals

PUBLIC = [getattr(callbacks, name) for name in callbacks.__all__]
CALLBACKS = [cls for cls in PUBLIC if isinstance(cls, type) and issubclass(cls, L.Callback)]


@pytest.mark.parametrize("cls", CALLBACKS, ids=lambda cls: cls.__name__)
def test_every_public_callback_documents_its_arguments(cls):
    doc = inspect.getdoc(cls) or ""
    params = [
        name
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if not params:
        assert "No arguments" in doc, cls.__name__
        return
    assert "Args:" in doc, cls.__name__
    if cls is FiniteModelCheckpoint:  # ModelCheckpoint's arguments, unchanged: the docstring says so
        assert "those of ``ModelCheckpoint``" in doc
        return
    args = doc.split("Args:", 1)[1]
    for name in params:
        assert f"{name}:" in args, f"{cls.__name__}: {name}"


def test_run_totals_is_the_one_way_into_the_summary():
    assert [cls.__name__ for cls in CALLBACKS if issubclass(cls, RunTotals)] == ["DivergenceGuard", "GradNormMonitor"]
    totals = collect_run_totals([GradNormMonitor(), DivergenceGuard(), L.Callback()])
    assert totals["optimizer_steps"] == 0 and totals["skipped_steps"] == 0 and "status" not in totals


def test_checkpoint_state_key_is_lightnings_and_follows_its_settings():
    """FiniteModelCheckpoint keeps its key between hooks (Lightning reads it for each one): the key checkpoints
    are saved under stays ModelCheckpoint's, and a changed setting gives the key of the new setting."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    def lightnings(checkpoint):  # ModelCheckpoint's own property, built afresh
        return ModelCheckpoint.state_key.fget(checkpoint)

    ours = FiniteModelCheckpoint(monitor="val/loss", mode="min", every_n_train_steps=50)
    first = ours.state_key
    assert first == ours.state_key == lightnings(ours) and first.startswith("FiniteModelCheckpoint{'monitor': 'val/l")
    ours.monitor = "val/acc"
    assert ours.state_key == lightnings(ours) != first and "val/acc" in ours.state_key
