"""PreemptionSync: on SIGTERM, every DDP rank stops at the same step instead of some of them hanging.

Lightning 2.6 handles SIGTERM by setting ``trainer.received_sigterm``; each rank then raises
``SIGTERMException`` at the end of the step in which *its own* flag is set (issue Lightning-AI/pytorch-lightning
#20806, open), and since PR #20825 the handler also calls ``dist.broadcast`` from inside the signal handler.
When the signal lands while another rank waits in a collective (the backward all-reduce, the guard's
decision), the two ranks issue different collectives and the job hangs until the scheduler kills it (3 of 5
SIGTERMs sent at arbitrary moments to a 2-process gloo run hung; tests/test_interrupts.py makes it certain).

Under DDP this callback swaps that one handler for the same handler without the broadcast (it still logs,
forwards the signal to the processes Lightning's launcher started and sets the flag; the SLURM requeue
handlers and any handler installed before Lightning stay as they are), and at the end of every training,
validation and test batch it all-reduces "has any rank received SIGTERM" into every rank's flag, so all
ranks stop after the same batch. That costs one small all-reduce per batch (Lightning itself broadcasts its
flag once per training batch under DDP). A single-process run is left alone. No arguments.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.connectors.signal_connector import _HandlersCompose
from typing_extensions import override

log = logging.getLogger(__name__)


class PreemptionSync(Callback):
    """Collective SIGTERM decisions under DDP (see the module docstring). No arguments."""

    @staticmethod
    def _swap_notifier(trainer: L.Trainer) -> None:
        connector = trainer._signal_connector
        current = signal.getsignal(signal.SIGTERM)
        if not isinstance(current, _HandlersCompose):
            return  # not Lightning's (another thread, Windows): nothing of Lightning's to change
        lightning_notifier = connector._sigterm_notifier_fn

        def notify(signum: int, frame: FrameType | None) -> None:  # Lightning's notifier minus the broadcast
            log.info("[rank: %d] Received SIGTERM: %d", trainer.global_rank, signum)
            if not connector.received_sigterm and trainer.strategy.launcher is not None:
                trainer.strategy.launcher.kill(signum)
            connector.received_sigterm = True

        current.signal_handlers = [notify if h == lightning_notifier else h for h in current.signal_handlers]

    def _start(self, trainer: L.Trainer) -> None:
        if trainer.world_size > 1:
            self._swap_notifier(trainer)

    def _agree(self, trainer: L.Trainer) -> None:
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(trainer.received_sigterm, all=False)
            if stop:
                trainer._signal_connector.received_sigterm = True

    # Lightning installs its handlers after on_fit_start, once per fit/validate/test: swap them at each start
    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(trainer)

    @override
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(trainer)

    @override
    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(trainer)

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._agree(trainer)  # before Lightning's own check at the end of the step

    @override
    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._agree(trainer)

    @override
    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._agree(trainer)
