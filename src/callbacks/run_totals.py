"""How callbacks hand their totals to the run summary: one method, ``run_totals()``.

A callback that has something to say about the whole fit (GradNormMonitor: the largest pre-clip norm and the
clipped steps; DivergenceGuard: its events, skips and the divergence) implements ``RunTotals``; the run
summary merges what every such callback returns, in callback order, and never reads their fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class RunTotals(Protocol):
    """``run_totals()`` returns JSON-ready summary entries (plain Python values) for the fit just ended.

    Called once after ``trainer.fit``; it may move device tensors to the host (once). A ``status`` entry
    (e.g. ``"diverged"``) overrides the run's status.
    """

    def run_totals(self) -> dict[str, Any]: ...


def collect_run_totals(callbacks: Iterable[object]) -> dict[str, Any]:
    """Every ``RunTotals`` callback's entries, merged in callback order."""
    out: dict[str, Any] = {}
    for callback in callbacks:
        if isinstance(callback, RunTotals):
            out.update(callback.run_totals())
    return out
