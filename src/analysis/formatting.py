"""How runs are written down: one number format, one markdown table, one name for a run's clipping.

The run name (the ``clip_label`` resolver of conf/train.yaml), the W&B tags, the end-of-run summary, the
comparison table and the reproduction report all use these, so a setting reads the same everywhere.
"""

from __future__ import annotations

import math
from typing import Any

MISSING = "–"


def fmt(value: Any, digits: int = 4) -> str:
    """A number to ``digits`` significant digits, scientific beyond 1e5 or below 1e-3, a whole number exactly
    (W&B's summaries turn 3000.0 into 3000: both read the same); None as a dash, anything else as ``str``."""
    if value is None:
        return MISSING
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.{digits - 1}e}"
    return str(int(value)) if float(value).is_integer() else f"{value:.{digits}g}"


def markdown_table(header: list[str] | str, rows: list[list[str]]) -> str:
    """A GitHub markdown table, one row per list of cells; ``header`` a list or one "a | b | c" string."""
    if isinstance(header, str):
        header = header.split(" | ")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def clip_label(clip: float | None, rule: str | None = None, algorithm: Any = "norm", preset: str | None = None) -> str:
    """A run's clipping in one word: a ``clip_preset`` choice (it sets the whole setting, penalty included), a
    clipping-group rule's name, ``clip<value>`` (Lightning's norm clipping), ``clipvalue<value>`` (element-wise),
    or ``noclip``."""
    if preset:
        return str(preset)
    if rule and rule not in ("none", "None"):
        return str(rule)
    if clip is None:
        return "noclip"
    return f"clipvalue{clip}" if getattr(algorithm, "value", algorithm) == "value" else f"clip{clip}"
