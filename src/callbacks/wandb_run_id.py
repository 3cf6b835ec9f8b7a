"""WandbRunId: stores the W&B run id in every checkpoint, so a resume can continue the same W&B run.

Lightning saves a callback's ``state_dict()`` under ``checkpoint["callbacks"][state_key]`` (a grouped one inside
its group's entry, src/callbacks/group.py); ``stored_id`` reads it back from a loaded checkpoint before any
Trainer exists (the logger needs the id at construction). Ranks other than 0 hold no W&B run (Lightning's dummy
experiment); only rank 0's state reaches the file.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from typing_extensions import override

from src.callbacks.group import callback_states


class WandbRunId(L.Callback):
    """Records the id of the trainer's WandbLogger run in checkpoints. No arguments."""

    KEY = "wandb_run_id"

    def __init__(self) -> None:
        self.run_id: str | None = None

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and trainer.is_global_zero:
                self.run_id = logger.experiment.id  # creates the run if nothing has logged yet

    @override
    def state_dict(self) -> dict[str, Any]:
        return {self.KEY: self.run_id}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # setup (before the restore) already recorded this trainer's run: later checkpoints keep that one
        self.run_id = self.run_id or state_dict.get(self.KEY)

    @classmethod
    def stored_id(cls, checkpoint: dict[str, Any]) -> str | None:
        """The run id a checkpoint dictionary holds (None if it was saved without this callback or without W&B)."""
        state = callback_states(checkpoint).get(cls.__qualname__)
        return state.get(cls.KEY) if isinstance(state, dict) else None
