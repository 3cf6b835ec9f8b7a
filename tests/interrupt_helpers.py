"""Test-only parts a run can be given on the command line to stop it at a known point (tests/test_interrupts.py).

They hold the run at a chosen step so a test can send a real signal from outside at a known moment; what
happens next (Lightning's handlers, gradlab's checkpointing and summary) is the real code.
"""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path
from typing import IO, Any

import lightning as L
import torch

from src.checkpoint_io import AtomicCheckpointIO


class SlowCheckpointIO(AtomicCheckpointIO):
    """AtomicCheckpointIO whose write of ``name`` at global step ``step`` stops half-way: it writes half the
    bytes, fsyncs them, touches ``marker`` and sleeps, so the test can SIGKILL the process mid-write."""

    def __init__(self, step: int, marker: str, name: str = "last.ckpt") -> None:
        super().__init__()
        self.step, self.marker, self.name = step, Path(marker), name
        self._slow = False

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        self._slow = checkpoint.get("global_step") == self.step and Path(str(path)).name == self.name
        super().save_checkpoint(checkpoint, path, storage_options)

    def _write(self, checkpoint: dict[str, Any], file: IO[bytes]) -> None:
        if not self._slow:
            super()._write(checkpoint, file)
            return
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getvalue()
        file.write(data[: len(data) // 2])
        file.flush()
        os.fsync(file.fileno())
        self.marker.write_text(str(len(data) // 2))
        time.sleep(300)  # killed here
        file.write(data[len(data) // 2 :])


class WaitForSignal(L.Callback):
    """After optimizer step ``step`` (or, with ``after_backward``, between that step's backward and its
    optimizer update), touch ``marker`` and wait (up to 120 s) until SIGTERM has arrived; only on global rank
    ``rank`` when one is given (under DDP the other ranks run on into their next collective and wait there)."""

    def __init__(self, step: int, marker: str, rank: int | None = None, after_backward: bool = False) -> None:
        self.step, self.marker, self.rank, self.after_backward = step, Path(marker), rank, after_backward

    def _hold(self, trainer: L.Trainer) -> None:
        if trainer.global_step != self.step or self.rank not in (None, trainer.global_rank):
            return
        self.marker.write_text(str(os.getpid()))
        deadline = time.monotonic() + 120
        while not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.02)

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.after_backward:
            self._hold(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if not self.after_backward and trainer.global_step == self.step:
            self._hold(trainer)


class SendSignals(L.Callback):
    """After optimizer step ``step``, send this process the named signals, in order (what SLURM sends)."""

    def __init__(self, step: int, signals: list[str]) -> None:
        self.step, self.signals = step, signals

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            for name in self.signals:
                os.kill(os.getpid(), getattr(signal, name))


class SignalInFinalValidation(L.Callback):
    """SIGTERM to this process during the first batch of ``trainer.validate`` (the run's final evaluation)."""

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.state.fn == "validate" and not trainer.received_sigterm:
            os.kill(os.getpid(), signal.SIGTERM)
