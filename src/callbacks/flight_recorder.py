"""A flight recorder: the last N optimizer steps of loss, total and per-layer gradient norms.

Recording keeps the step's loss and total norm as the host floats the guard reads anyway, and a reference to
its norms, which stay on their device (no copy, no kernel, no host sync; the per-layer sums are taken when
read). The layers reach the host only when a run diverges, to explain it: the step, the first layer (network
order) whose gradient went non-finite, the layer whose gradient norm grew most against its own recent median,
and the norms leading up to it.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import torch

from src.grad_norms import GradStats


class FlightRecorder:
    """Ring buffer of the last ``steps`` optimizer steps (step, loss, total and per-layer gradient norms).

    Args:
        steps: how many steps it keeps.
    """

    def __init__(self, steps: int = 100) -> None:
        self.capacity = steps
        self.names: list[str] = []
        self._names_of: list[str] | None = None  # the list ``names`` was last compared with (one per layer index)
        # (step, loss, total norm, the step's norms): the host floats the guard already read, the GradStats as it is
        self._rows: deque[tuple[int, float, float, GradStats]] = deque(maxlen=steps)

    def record(self, step: int, loss: float, total: float, stats: GradStats) -> None:
        """Keep one step: a reference to its norms (fresh tensors each step), no copy and no kernel."""
        names = stats.layer_names
        if names is not self._names_of and names != self.names:  # another model: its rows are not comparable
            self.names = list(names)
            self._rows.clear()
        self._names_of = names
        self._rows.append((step, loss, total, stats))

    def history(self) -> list[list[float]]:
        """Recorded rows in step order, ``[step, loss, total, *layer norms]`` (one host copy of the layers)."""
        if not self._rows:
            return []
        layers = torch.stack([row[3].layer_norms.float() for row in self._rows]).cpu().tolist()
        rows = zip(self._rows, layers, strict=True)
        return [[float(step), loss, total, *norms] for (step, loss, total, _), norms in rows]

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
