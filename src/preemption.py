"""SIGTERM, the scheduler's "stop now": the run ends as ``interrupted``, resumable, with exit status 143.

Lightning 2.6 installs its own SIGTERM handler while ``fit``/``validate``/``test`` run
(``trainer/connectors/signal_connector.py``): it sets ``trainer.received_sigterm`` and forwards the signal to
the DDP processes its launcher started; the loops then finish the current training step (or validation
batch) and raise ``SIGTERMException``, a ``SystemExit`` without a code — left alone, the process would exit
with status 0, as if the run had completed. gradlab keeps Lightning's handlers (and, under SLURM, the SIGUSR1
auto-requeue handler Lightning adds beside them) and changes only what follows: ``FiniteModelCheckpoint``
saves ``last.ckpt`` at that step boundary, ``train()`` skips the final evaluation and records status
``interrupted`` (summary.json, W&B summary, the W&B run marked preempting and finished with this exit code),
and scripts/train.py exits with ``128 + SIGTERM``: the status a shell reports for a process SIGTERM ended,
which schedulers and W&B treat as "not finished" (Kubernetes restarts the pod, W&B requeues a preempted sweep
run) where 0 would mark it completed.
"""

from __future__ import annotations

import signal
from typing import Any

import lightning as L

EXIT_INTERRUPTED = 128 + int(signal.SIGTERM)  # 143


def was_interrupted(trainer: L.Trainer) -> bool:
    """True when SIGTERM reached this trainer's last ``fit`` (checked before any later validate/test)."""
    return bool(trainer.received_sigterm)


def exit_status(summary: dict[str, Any]) -> int:
    """The process exit status for a finished ``train()``: 143 for an interrupted run, 0 otherwise."""
    return EXIT_INTERRUPTED if summary.get("status") == "interrupted" else 0
