"""What "beats the trivial baseline" and "solves the task" mean, in one place.

The console, summary.json, the W&B summary, scripts/compare.py and the reproduction report all call these, so
a run is judged the same way everywhere. Losses are compared with the task's trivial baseline (src/data/):
- beats: below BEATS × baseline. A 10% margin: a model stuck at the baseline scatters around it by a few
  percent on a 1024-sequence validation set (adding: the MSE of always predicting 1 has a standard error
  of 3.7% of 1/6), so "below 1.0×" would call noise a win.
- solves: below SOLVES × baseline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

BEATS = 0.9
SOLVES = 0.1


def vs_baseline(loss: float | None, baseline: float | None) -> float | None:
    """loss / baseline, or None when either is missing or the task has no baseline."""
    if loss is None or baseline is None or not math.isfinite(baseline) or baseline <= 0:
        return None
    return loss / baseline


def beats(loss: float | None, baseline: float | None) -> bool | None:
    ratio = vs_baseline(loss, baseline)
    return None if ratio is None else bool(ratio < BEATS)


def solves(loss: float | None, baseline: float | None) -> bool | None:
    ratio = vs_baseline(loss, baseline)
    return None if ratio is None else bool(ratio < SOLVES)


def steps_to_solve(curve: Iterable[tuple[int, float]], baseline: float | None) -> int | None:
    """The first step of a (step, loss) curve at which the loss solves the task."""
    return next((step for step, loss in curve if solves(loss, baseline)), None)


def label(loss: float | None, baseline: float | None) -> str:
    """One word for tables: 'solves', 'beats', 'no' (does not beat it) or 'n/a' (no loss or no baseline)."""
    if vs_baseline(loss, baseline) is None:
        return "n/a"
    return "solves" if solves(loss, baseline) else "beats" if beats(loss, baseline) else "no"


def verdict(loss: float | None, baseline: float | None) -> str:
    """The console's phrase: 'solves it (< 0.1x)', 'beats it (< 0.9x)' or 'does NOT beat it (not < 0.9x)'."""
    return {
        "solves": f"solves it (< {SOLVES}x)",
        "beats": f"beats it (< {BEATS}x)",
        "no": f"does NOT beat it (not < {BEATS}x)",
    }.get(label(loss, baseline), "no baseline to compare with")
