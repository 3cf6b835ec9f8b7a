"""What a run's log shows a person: the whole config tree in a log file, no third-party noise."""

from __future__ import annotations

import logging
import os
import warnings

import pytest

from src.quiet import LIGHTNING_INFO_LOGGER, DropLightningTips, quiet_third_party
from tests.cli_runs import SMALL, run_cli

NOISE = ("💡 Tip", "litlogger", "litmodels", "anonymous setting", "LeafSpec")


@pytest.mark.slow
def test_a_piped_run_logs_the_whole_config_tree_and_no_third_party_noise(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SILENT"}  # wandb's own warnings visible
    name = "a-run-name-longer-than-eighty-columns-" + "x" * 60
    proc = run_cli(tmp_path, *SMALL, "logger=wandb", "callbacks=minimal", f"name={name}", env=env)
    (run_dir,) = tmp_path.glob("outputs/*/*")
    assert len(str(run_dir)) > 80
    lines = proc.stdout.splitlines()
    assert any(
        line.rstrip().endswith(f"name={name}, group=None, tags=[], test=False, ckpt_path=None, overwrite=False")
        for line in lines
    )
    assert any(line.rstrip().endswith(f"default_root_dir: {run_dir}") for line in lines)  # not cut at 80 columns
    for noise in NOISE:
        assert noise not in proc.stderr and noise not in proc.stdout, noise
    assert "GPU available: False" in proc.stderr  # Lightning's other start-up lines stay


def test_the_filters_are_precise():
    logger = logging.getLogger(LIGHTNING_INFO_LOGGER)
    before = list(logger.filters)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet_third_party()
            quiet_third_party()  # idempotent: one logging filter
            assert sum(isinstance(f, DropLightningTips) for f in logger.filters) == 1
            warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)
            warnings.warn("some other deprecation", FutureWarning, stacklevel=1)
        # the LeafSpec filter matches Lightning's module only: raised from here, both warnings are shown
        assert [str(w.message)[:12] for w in caught] == ["`isinstance(", "some other d"]
        tip = logging.LogRecord(LIGHTNING_INFO_LOGGER, logging.INFO, "", 0, "💡 Tip: try litlogger", None, None)
        info = logging.LogRecord(LIGHTNING_INFO_LOGGER, logging.INFO, "", 0, "GPU available: False", None, None)
        assert not logger.filter(tip) and logger.filter(info)
    finally:
        logger.filters[:] = before
