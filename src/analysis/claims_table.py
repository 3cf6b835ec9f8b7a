"""The claims table that opens docs/results.md: one row per claim of src/analysis/claims.py, rendered from the
rows ``claims.evaluate_claims`` computed (the verdicts are never written here, only printed).

Measured numbers read "median (min–max, n runs)" over seeds; a run that diverged counts with an infinite final
loss. Below the table every criterion is listed in the words of the object that computed it, with each seed's
outcome, so a reader can check a verdict against the runs.
"""

from __future__ import annotations

from collections import Counter

from src.analysis.claims import Claim, Row
from src.analysis.formatting import MISSING, fmt, markdown_table
from src.analysis.verdicts import Spread, Verdict

VERDICT_ORDER = [Verdict.supported, Verdict.contradicted, Verdict.not_testable, Verdict.tooling, Verdict.not_run]


def spread_text(spread: Spread, digits: int = 3) -> str:
    """median (min–max, n) over seeds; one run prints its value alone."""
    if spread.median is None:
        return MISSING
    if spread.n == 1:
        return fmt(spread.median, digits)
    return f"{fmt(spread.median, digits)} ({fmt(spread.lo, digits)}–{fmt(spread.hi, digits)}, n={spread.n})"


def experiment_text(claim: Claim) -> str:
    if claim.experiments:
        return "<br>".join(f"`python scripts/train.py -m experiment={name}`" for name in claim.experiments)
    if claim.compute is not None:
        return "computed with torch.nn.utils.clip_grad_norm_ (`src/analysis/claims.py`)"
    return MISSING


def verdict_text(row: Row) -> str:
    text = f"**{row.verdict.value}**"
    if row.outcome is not None:
        text += f" ({row.outcome.tally})"
    if row.claim.note and row.claim.fixed is not None:
        text += f": {row.claim.note}"
    if row.claim.test:
        text += f"; test: `{row.claim.test}`"
    return text


def measured_text(row: Row) -> str:
    numbers = "; ".join(f"{show.label} {spread_text(s, show.digits)}" for show, s in row.numbers)
    if row.claim.note and row.claim.fixed is None:
        numbers += f" ({row.claim.note})" if numbers else row.claim.note
    return numbers or MISSING


def counts(rows: list[Row]) -> Counter[Verdict]:
    return Counter(row.verdict for row in rows)


def counts_text(rows: list[Row]) -> str:
    tally = counts(rows)
    parts = [f"{tally[v]} {v.value}" for v in VERDICT_ORDER if tally[v]]
    return f"{len(rows)} claims: " + ", ".join(parts) + "."


def cell(text: str) -> str:
    """A table cell: a "|" inside it (|w|, a list of options) would end the cell."""
    return text.replace("|", "\\|")


def claims_table(rows: list[Row]) -> list[str]:
    """The table, its verdict counts and, below, each tested claim's criterion with its per-seed outcome."""
    cells = [
        [
            cell(text)
            for text in (
                f"{i}. `{row.claim.key}`",
                f"{row.published.claim} — *{row.published.source}*",
                row.published.number,
                experiment_text(row.claim),
                measured_text(row),
                verdict_text(row),
            )
        ]
        for i, row in enumerate(rows, 1)
    ]
    out = [
        "## Claims and verdicts",
        "",
        counts_text(rows),
        "",
        "Every verdict is computed by `src/analysis/claims.py` from the criterion below, fixed before the runs "
        "(each experiment's config states it), applied seed by seed: *supported* when it holds on every seed "
        "that has every arm (at least 3 seeds where two settings are compared), *contradicted* when it fails on "
        "any, *not run* when the runs are missing. *Not testable at this scale* names the scale that would test "
        "the claim; *tooling only* is advice about monitoring, answered by a tool rather than an experiment. "
        "Measured numbers: median (min–max, n runs) over seeds.",
        "",
        markdown_table("claim | as published (source) | published number | experiment | measured | verdict", cells),
        "",
        "### Criteria",
        "",
    ]
    for i, row in enumerate(rows, 1):
        if row.claim.criterion is None or row.outcome is None:
            continue
        seeds = ", ".join(f"seed {s} {'holds' if ok else 'fails'}" for s, ok in row.outcome.per_seed.items())
        out.append(f"{i}. `{row.claim.key}`: {row.claim.criterion.text}. {seeds or 'no seed decided'}.")
    return out
