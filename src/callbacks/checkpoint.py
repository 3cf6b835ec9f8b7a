"""FiniteModelCheckpoint: Lightning's ModelCheckpoint that never writes a model holding NaN/inf weights.

A run that diverged with ``on_nonfinite=warn`` trains on with NaN weights; ``last.ckpt`` would then hold
them and a resume would start from garbage. Saving is refused (with a warning) while any parameter is
non-finite, so ``last`` and ``best`` always point to the last finite model. The check costs one host sync per
checkpoint save, not per step. The decision is collective (all ranks must hold finite weights): DDP ranks
normally hold identical weights, but a NaN that one rank applied before the others see it would otherwise
send one rank into ``save_checkpoint``'s barrier alone and hang the job.
"""

from __future__ import annotations

import logging

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor
from typing_extensions import override

log = logging.getLogger(__name__)


def weights_are_finite(module: torch.nn.Module) -> bool:
    params = [p.detach() for p in module.parameters()]
    if not params:
        return True
    norms = torch.stack(torch._foreach_norm(params, 2.0, dtype=torch.float32))
    return bool(torch.isfinite(norms).all())


class FiniteModelCheckpoint(ModelCheckpoint):
    @staticmethod
    def _finite(trainer: L.Trainer, filepath: str) -> bool:
        finite = trainer.strategy.reduce_boolean_decision(weights_are_finite(trainer.lightning_module), all=True)
        if not finite:
            log.warning("not saving %s: the model holds non-finite weights", filepath)
        return finite

    @override
    def _update_best_and_save(self, current: Tensor, trainer: L.Trainer, monitor_candidates: dict[str, Tensor]) -> None:
        # checked before the top-k bookkeeping: a refused save must neither become `best` nor evict the finite best
        if self._finite(trainer, "a top-k checkpoint"):
            super()._update_best_and_save(current, trainer, monitor_candidates)

    @override
    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:  # last.ckpt and every other save
        if self._finite(trainer, filepath):
            super()._save_checkpoint(trainer, filepath)
