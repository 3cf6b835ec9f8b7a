"""A flight recorder: the last N optimizer steps of loss, total and per-layer gradient norms, kept on device.

Recording is a copy into a preallocated ring buffer (no host sync); the buffer reaches the host only when a
run diverges, to explain it: the step, the first layer (network order) whose gradient went non-finite, the
layer whose gradient norm grew most against its own recent median, and the norms leading up to it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from src.grad_norms import GradStats


class FlightRecorder:
    """Ring buffer of the last ``steps`` optimizer steps (step, loss, total and per-layer gradient norms).

    Args:
        steps: how many steps it keeps.
    """

    def __init__(self, steps: int = 100) -> None:
        self.capacity = steps
        self.names: list[str] = []
        self._rows: Tensor | None = None  # (capacity, 3 + L): step, loss, total norm, layer norms
        self._count = 0

    def record(self, step: int, loss: Tensor, stats: GradStats) -> None:
        if self._rows is None or self._rows.shape[1] != 3 + len(stats.layer_names):
            self.names = list(stats.layer_names)
            self._rows = torch.full((self.capacity, 3 + len(self.names)), float("nan"), device=stats.total_norm.device)
            self._count = 0
        row = self._rows[self._count % self.capacity]
        row[0] = step
        values = (
            loss.reshape(1).to(row.dtype),
            stats.total_norm.reshape(1).to(row.dtype),
            stats.layer_norms.to(row.dtype),
        )
        torch.cat(values, out=row[1:])  # one copy into the row for loss, total and layer norms
        self._count += 1

    def history(self) -> list[list[float]]:
        """Recorded rows in step order (host copy)."""
        if self._rows is None:
            return []
        n = min(self._count, self.capacity)
        start = self._count % self.capacity if self._count > self.capacity else 0
        order = [(start + i) % self.capacity for i in range(n)]
        return self._rows[order].cpu().tolist()

    def diagnose(self, step: int, reason: str) -> dict[str, Any]:
        """What the buffer says about the event at optimizer step ``step`` (host-side; run on divergence only)."""
        rows = self.history()
        at = next((r for r in reversed(rows) if int(r[0]) == step), None)
        finite = [r for r in rows if int(r[0]) <= step and all(math.isfinite(v) for v in r[1:])]
        before = [r for r in finite if int(r[0]) < step]
        nonfinite = [] if at is None else [n for n, v in zip(self.names, at[3:], strict=True) if not math.isfinite(v)]
        # the layer that grew most against its own recent median: at the event step when its norms are finite
        # (a spike), else at the last finite step before it (what led up to the NaN)
        probe = finite[-1] if finite else None
        spike_layer, spike_ratio = None, None
        if probe is not None:
            reference = [r for r in finite if r[0] < probe[0]][-20:]
            ratios = []
            for i, name in enumerate(self.names):
                past = sorted(r[3 + i] for r in reference)
                if past and past[len(past) // 2] > 0:
                    ratios.append((probe[3 + i] / past[len(past) // 2], name))
            if ratios:
                spike_ratio, spike_layer = max(ratios)
        largest = (
            None
            if probe is None or not self.names
            else self.names[max(range(len(self.names)), key=lambda i: probe[3 + i])]
        )
        return {
            "step": step,
            "reason": reason,
            "loss_nonfinite": at is not None and not math.isfinite(at[1]),
            "first_nonfinite_layer": nonfinite[0] if nonfinite else None,  # network order
            "nonfinite_layers": nonfinite,
            "spike_layer": spike_layer,
            "spike_ratio_vs_median": spike_ratio,
            "largest_grad_layer": largest,
            "layers_measured_at_step": None if probe is None else int(probe[0]),
            "loss_at_step": None if at is None else at[1],
            "grad_norm_at_step": None if at is None else at[2],
            "last_finite_grad_norm": before[-1][2] if before else None,
            "history": {
                "step": [int(r[0]) for r in rows],
                "loss": [r[1] for r in rows],
                "grad_norm": [r[2] for r in rows],
                "layers": {name: [r[3 + i] for r in rows] for i, name in enumerate(self.names)},
            },
        }
