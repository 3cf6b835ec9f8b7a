"""FiniteModelCheckpoint: Lightning's ModelCheckpoint that never writes a model holding NaN/inf weights, never
leaves a half-written file, and saves ``last`` when the run is told to stop (SIGTERM).

A run that diverged with ``on_nonfinite=warn`` trains on with NaN weights; ``last.ckpt`` would then hold
them and a resume would start from garbage. Saving is refused (with a warning) while any parameter is
non-finite, so ``last`` and ``best`` always point to the last finite model. The check costs one host sync per
checkpoint save, not per step. The decision is collective (all ranks must hold finite weights): DDP ranks
normally hold identical weights, but a NaN that one rank applied before the others see it would otherwise
send one rank into ``save_checkpoint``'s barrier alone and hang the job.

The files themselves are written by the Trainer's CheckpointIO (``src.checkpoint_io.AtomicCheckpointIO`` in
gradlab's trainer configs); ``save_last="link"`` is made atomic here, since Lightning's ``_link_checkpoint``
deletes the old ``last`` before it creates the new link (or copy). On SIGTERM, Lightning finishes the current
step and raises ``SIGTERMException``; ``last`` is then saved at that step boundary, so a resume continues
exactly where the run stopped.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import Tensor
from typing_extensions import override

from src.checkpoint_io import atomic_symlink, atomic_write, remove_partial_files
from src.grad_norms import all_finite

log = logging.getLogger(__name__)


class FiniteModelCheckpoint(ModelCheckpoint):
    """``lightning.pytorch.callbacks.ModelCheckpoint`` that refuses non-finite models, links ``last``
    atomically and, when ``save_last`` is set, saves ``last`` on SIGTERM and at the end of training (so ``last``
    always holds the final finite weights).

    Args: those of ``ModelCheckpoint`` (gradlab's config: ``dirpath``, ``filename``, ``monitor``, ``mode``,
    ``save_top_k``, ``save_last``), unchanged.
    """

    @property
    @override
    def state_key(self) -> str:
        """Lightning's key, built (a repr of the settings) once per setting: Lightning reads it for every hook of
        every callback it dispatches, several times a step."""
        settings = (self.monitor, self.mode, self._every_n_train_steps, self._every_n_epochs, self._train_time_interval)
        cached: tuple[tuple[object, ...], str] | None = getattr(self, "_state_key", None)
        if cached is None or cached[0] != settings:
            cached = self._state_key = (settings, super().state_key)
        return cached[1]

    @staticmethod
    def _finite(trainer: L.Trainer, filepath: str) -> bool:
        weights = list(trainer.lightning_module.parameters())
        finite = trainer.strategy.reduce_boolean_decision(all_finite(weights), all=True)
        if not finite:
            log.warning("not saving %s: the model holds non-finite weights", filepath)
        return finite

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # a writer killed mid-save (SIGKILL) leaves its temporary file; only a run resumed in place sees it
        if trainer.is_global_zero and stage == "fit" and self.dirpath and os.path.isdir(self.dirpath):
            for path in remove_partial_files(self.dirpath):
                log.info("removed %s, left by a checkpoint write that was killed", path)

    @override
    def _update_best_and_save(self, current: Tensor, trainer: L.Trainer, monitor_candidates: dict[str, Tensor]) -> None:
        # checked before the top-k bookkeeping: a refused save must neither become `best` nor evict the finite best
        if self._finite(trainer, "a top-k checkpoint"):
            super()._update_best_and_save(current, trainer, monitor_candidates)

    @override
    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:  # last.ckpt and every other save
        if self._finite(trainer, filepath):
            super()._save_checkpoint(trainer, filepath)

    @staticmethod
    @override
    def _link_checkpoint(trainer: L.Trainer, filepath: str, linkpath: str) -> None:
        if trainer.is_global_zero and os.path.abspath(filepath) != os.path.abspath(linkpath):
            if os.path.isdir(linkpath) and not os.path.islink(linkpath):
                shutil.rmtree(linkpath)
            try:
                atomic_symlink(filepath, linkpath)
            except OSError:  # no symlinks (e.g. Windows without the privilege): a copy, just as atomic
                with open(filepath, "rb") as source:
                    atomic_write(linkpath, lambda f: shutil.copyfileobj(source, f))
        trainer.strategy.barrier()

    def _save_last_now(self, trainer: L.Trainer) -> None:
        if not self.save_last or self._should_skip_saving_checkpoint(trainer):
            return
        if self._last_global_step_saved == trainer.global_step and Path(self.last_model_path or "").exists():
            return  # this step's validation already saved it
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # without every_n_train_steps or train_time_interval Lightning's hook ends in "skip" on every batch (both
        # its automatic and manual optimization branches), after reading the trainer's state and the clock
        if self._every_n_train_steps >= 1 or self._train_time_interval is not None:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    @override
    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        if isinstance(exception, SIGTERMException):  # raised at a step boundary (or mid-validation)
            self._save_last_now(trainer)

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning saves `last` here only if it never saved one; a max_steps between two validations (or SIGTERM
        # during the last step, which Lightning finishes without raising) would leave last.ckpt behind the model
        super().on_train_end(trainer, pl_module)
        self._save_last_now(trainer)
