"""The flagship pair, `model=rnn clip=null` vs `clip=1.0` at the defaults (3000 steps), one seed.

README and conf/experiment/flagship.yaml give the full-size criterion over three seeds; this checks the same
direction on the submitted defaults: without clipping the gradient norm explodes (past 1e6; the run diverges
or learns nothing), with clipping at 1.0 the same network learns the adding problem below half the baseline.

When the clipped run leaves the plateau depends on the CPU's float rounding (the CI machine's seed 1 was
still at 0.94x the baseline at step 1000, this machine's below 0.5x), so the test runs the default budget:
the three seeds measured here solved it (< 0.1x) by steps 1800-2200. That pair takes ~70 s, so the fast suite
runs the explosion in full (it diverges within ~60 steps, or runs its 3000 finite steps in ~30 s) beside the
clipped run's first 400 steps, where clipping already holds the norm, and ``make test-all`` the whole pair.
"""

from __future__ import annotations

import pytest

from src.train import train

DEFAULTS = [
    "seed=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks=minimal",
    "logger=csv",
    "test=false",
]


def explodes(unclipped: dict) -> None:
    """The norm runs away and the run learns nothing. Whether it ends in NaN depends on the float rounding:
    seed 1 diverges at step 61 with one thread; with two threads on an Intel Xeon its norm reached 1.1e9 and its
    loss stayed at 3.5x the baseline, finite, for 3000 steps (the flagship criterion accepts either)."""
    if unclipped["status"] == "diverged":
        assert unclipped["divergence"]["reason"].startswith("nonfinite")
        assert unclipped["divergence"]["last_finite_grad_norm"] > 1e6  # the norm ran away before the NaN
    else:
        assert unclipped["status"] == "completed" and unclipped["beats_baseline"] is False
        assert unclipped["max_grad_norm"] > 1e6


def test_flagship_pair_explodes_without_clipping_and_is_held_with_it(make_cfg):
    explodes(train(make_cfg("model=rnn", "clip=null", *DEFAULTS, fast=False)))
    clipped = train(make_cfg("model=rnn", "clip=1.0", "trainer.max_steps=400", *DEFAULTS, fast=False))
    assert clipped["status"] == "completed" and clipped["steps"] == 400  # past the step where the unclipped run died
    assert clipped["max_grad_norm"] < 100 and clipped["steps_clipped"] > 100  # clipping acted, often


@pytest.mark.slow
def test_flagship_pair_explodes_without_clipping_and_learns_with_it(make_cfg):
    explodes(train(make_cfg("model=rnn", "clip=null", *DEFAULTS, fast=False)))
    clipped = train(make_cfg("model=rnn", "clip=1.0", *DEFAULTS, fast=False))
    assert clipped["status"] == "completed" and clipped["steps"] == 3000
    assert clipped["max_grad_norm"] < 100 and clipped["steps_clipped"] > 100  # clipping acted, often
    assert clipped["loss_vs_baseline"] < 0.5
