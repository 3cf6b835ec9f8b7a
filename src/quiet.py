"""Keep third-party start-up noise out of a run's log, one message at a time (never a blanket filter).

What a default run printed before (lightning 2.6.6, torch 2.13, wandb 0.31):
- Lightning's advertisement "💡 Tip: For seamless cloud logging ... litlogger" when the Trainer sets up its
  loggers (and one for litmodels when a checkpoint callback is attached): an INFO record of the
  ``lightning.pytorch.utilities.rank_zero`` logger. Other records of that logger (GPU available, fit stopped)
  stay.
- torch's FutureWarning "`isinstance(treespec, LeafSpec)` is deprecated", raised by Lightning's own
  ``lightning/pytorch/utilities/_pytree.py`` on every fit: the user can do nothing about it.
- wandb's "The anonymous setting has no effect": Lightning's WandbLogger passes ``anonymous=None``
  (``src.wandb_run.build_logger`` leaves the key out).
"""

from __future__ import annotations

import logging
import warnings

LIGHTNING_INFO_LOGGER = "lightning.pytorch.utilities.rank_zero"


class DropLightningTips(logging.Filter):
    """Drops the log records that start with Lightning's "💡 Tip:" (product advertisements). No arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


def quiet_third_party() -> None:
    """Install the filters above (idempotent); called by scripts/train.py before anything runs."""
    logger = logging.getLogger(LIGHTNING_INFO_LOGGER)
    if not any(isinstance(f, DropLightningTips) for f in logger.filters):
        logger.addFilter(DropLightningTips())
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
