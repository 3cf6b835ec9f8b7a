"""FiniteModelCheckpoint: Lightning's ModelCheckpoint that never writes a model holding NaN/inf weights.

A run that diverged with ``on_nonfinite=warn`` trains on with NaN weights; ``last.ckpt`` would then hold
them and a resume would start from garbage. Saving is refused (with a warning) while any parameter is
non-finite, so ``last`` and ``best`` always point to the last finite model. The check costs one host sync per
checkpoint save, not per step. Weights are identical on every DDP rank, so all ranks decide alike.
"""

from __future__ import annotations

import logging

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from typing_extensions import override

log = logging.getLogger(__name__)


def weights_are_finite(module: torch.nn.Module) -> bool:
    params = [p.detach() for p in module.parameters()]
    if not params:
        return True
    norms = torch.stack(torch._foreach_norm(params, 2.0, dtype=torch.float32))
    return bool(torch.isfinite(norms).all())


class FiniteModelCheckpoint(ModelCheckpoint):
    @override
    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if not weights_are_finite(trainer.lightning_module):
            log.warning("not saving %s: the model holds non-finite weights", filepath)
            return
        super()._save_checkpoint(trainer, filepath)
