"""A claim's verdict from its criterion and its measurements over seeds; pure, no run files, no plotting.

Each run of a comparison is reduced to a ``Result`` (its arm, seed, status, final/best loss, steps to solve and
any other number the criterion reads). A ``Criterion`` is a per-seed test over the arms of one seed (built from
the small tests below, so the criterion describes itself in the report with the same object that computes it)
plus how many seeds must pass. ``evaluate`` applies it: supported when enough seeds pass, contradicted when not,
not run when too few seeds have every arm. Claims that no run here can test carry their verdict directly
(``Verdict.not_testable`` with the scale that would, ``Verdict.tooling`` for "monitor X" advice).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from src.analysis import criteria


class Verdict(str, Enum):
    supported = "supported"
    contradicted = "contradicted"
    not_testable = "not testable at this scale"
    tooling = "tooling only"
    not_run = "not run"


@dataclass(frozen=True)
class Result:
    """One run, reduced to what a criterion reads.

    Args:
        arm: which setting of the comparison the run is (e.g. ``"lstm"``, ``"T50 clip=null"``).
        seed: the run's seed; a criterion compares arms within one seed.
        status: ``completed``, ``diverged``, ``stopped_early``, ...
        final: the final validation loss (inf for a diverged run).
        best: the lowest finite validation loss seen during training.
        baseline: the task's trivial-baseline loss (None when it has none).
        steps_to_solve: the first validation step below ``criteria.SOLVES`` x baseline.
        values: any other measured number, by name (``max_grad_norm``, ``grad_norm_cv``, ...).
    """

    arm: str
    seed: int
    status: str = "completed"
    final: float | None = None
    best: float | None = None
    baseline: float | None = None
    steps_to_solve: int | None = None
    values: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"

    def get(self, key: str) -> float | None:
        """A number by name: final, best, steps_to_solve, final_ratio/best_ratio (x baseline), or a value."""
        if key == "final":
            return self.final
        if key == "best":
            return self.best
        if key == "steps_to_solve":
            return None if self.steps_to_solve is None else float(self.steps_to_solve)
        if key in ("final_ratio", "best_ratio"):
            return criteria.vs_baseline(self.final if key == "final_ratio" else self.best, self.baseline)
        value = self.values.get(key)
        return None if value is None else float(value)


Arms = Mapping[str, Result]


@dataclass(frozen=True)
class Test:
    """A per-seed test over one seed's arms: True/False, or None when an arm or a number it needs is missing."""

    text: str
    fn: Callable[[Arms], bool | None]

    def __call__(self, arms: Arms) -> bool | None:
        return self.fn(arms)


def _arm(arms: Arms, name: str) -> Result | None:
    return arms.get(name)


def solves(arm: str, key: str = "final") -> Test:
    """The arm's loss (final or best) is below criteria.SOLVES x the baseline."""

    def fn(arms: Arms) -> bool | None:
        r = _arm(arms, arm)
        return None if r is None else bool(criteria.solves(r.get(key), r.baseline))

    return Test(f"{arm} solves ({key} < {criteria.SOLVES}× baseline)", fn)


def beats(arm: str, key: str = "final") -> Test:
    def fn(arms: Arms) -> bool | None:
        r = _arm(arms, arm)
        return None if r is None else bool(criteria.beats(r.get(key), r.baseline))

    return Test(f"{arm} beats the baseline ({key} < {criteria.BEATS}×)", fn)


def diverges(arm: str) -> Test:
    def fn(arms: Arms) -> bool | None:
        r = _arm(arms, arm)
        return None if r is None else r.diverged

    return Test(f"{arm} diverges", fn)


def below(arm: str, key: str, threshold: float) -> Test:
    """The arm's number is below a fixed threshold (a missing or non-finite number fails)."""

    def fn(arms: Arms) -> bool | None:
        r = _arm(arms, arm)
        if r is None:
            return None
        value = r.get(key)
        return value is not None and math.isfinite(value) and value < threshold

    return Test(f"{arm} {key} < {threshold:g}", fn)


def above(arm: str, key: str, threshold: float) -> Test:
    """The arm's number is above a fixed threshold (inf counts as above: a norm that overflowed)."""

    def fn(arms: Arms) -> bool | None:
        r = _arm(arms, arm)
        if r is None:
            return None
        value = r.get(key)
        return value is not None and not math.isnan(value) and value > threshold

    return Test(f"{arm} {key} > {threshold:g}", fn)


def close(arm: str, key: str, target: float, tol: float) -> Test:
    """The arm's number is within ``tol`` of a published one (half a unit of its last printed digit)."""

    def fn(arms: Arms) -> bool | None:
        r = _arm(arms, arm)
        if r is None:
            return None
        value = r.get(key)
        return value is not None and abs(value - target) <= tol

    return Test(f"{arm} {key} = {target:g} ± {tol:g}", fn)


def less(a: str, b: str, key: str, factor: float = 1.0) -> Test:
    """a's number < factor x b's (a non-finite a fails; a finite a against an infinite b passes)."""

    def fn(arms: Arms) -> bool | None:
        ra, rb = _arm(arms, a), _arm(arms, b)
        if ra is None or rb is None:
            return None
        va, vb = ra.get(key), rb.get(key)
        if va is None or vb is None or math.isnan(va) or math.isnan(vb):
            return False
        return math.isfinite(va) and va < factor * vb

    scale = "" if factor == 1.0 else f"{factor:g}× "
    return Test(f"{a} {key} < {scale}{b}'s", fn)


@dataclass(frozen=True)
class Quantity:
    """A number computed from one seed's arms (None when an arm or a number is missing), for ``greater``."""

    text: str
    fn: Callable[[Arms], float | None]

    def __call__(self, arms: Arms) -> float | None:
        return self.fn(arms)


def value(arm: str, key: str) -> Quantity:
    def fn(arms: Arms) -> float | None:
        r = _arm(arms, arm)
        return None if r is None else r.get(key)

    return Quantity(f"{arm} {key}", fn)


def indicator(test: Test) -> Quantity:
    """1 when the test passes, 0 when it fails: success rates and their differences per seed."""

    def fn(arms: Arms) -> float | None:
        outcome = test(arms)
        return None if outcome is None else float(outcome)

    return Quantity(f"[{test.text}]", fn)


def minus(a: Quantity, b: Quantity) -> Quantity:
    def fn(arms: Arms) -> float | None:
        va, vb = a(arms), b(arms)
        return None if va is None or vb is None else va - vb

    return Quantity(f"{a.text} − {b.text}", fn)


def ratio(a: Quantity, b: Quantity) -> Quantity:
    """a / b (inf when b is 0 and a is not)."""

    def fn(arms: Arms) -> float | None:
        va, vb = a(arms), b(arms)
        if va is None or vb is None:
            return None
        return va / vb if vb else (math.inf if va else math.nan)

    return Quantity(f"{a.text} / {b.text}", fn)


def sensitivity(arms: Iterable[str], key: str = "final", cap: str = "train_initial") -> Quantity:
    """Wortsman et al.'s LR sensitivity of a sweep: the mean over its arms of min(key, cap) minus the best key.

    ``cap`` is the loss at initialisation: a run that fails (a diverged run's final loss is inf) counts as no
    worse than not training at all.
    """
    names = tuple(arms)

    def fn(arms_: Arms) -> float | None:
        runs = [_arm(arms_, name) for name in names]
        if any(r is None for r in runs):
            return None
        pairs = [(r.get(key), r.get(cap)) for r in runs if r is not None]
        if any(x is None or c is None for x, c in pairs):
            return None
        capped = [min(x, c) for x, c in pairs if x is not None and c is not None]
        best = min(x for x, _ in pairs if x is not None)
        return statistics.fmean(capped) - best if math.isfinite(best) else None

    return Quantity(f"LR sensitivity of {names[0]} … {names[-1]}", fn)


def greater(a: Quantity, b: Quantity) -> Test:
    """a > b (NaN fails)."""

    def fn(arms: Arms) -> bool | None:
        va, vb = a(arms), b(arms)
        return None if va is None or vb is None else va > vb

    return Test(f"{a.text} > {b.text}", fn)


def all_of(*tests: Test) -> Test:
    def fn(arms: Arms) -> bool | None:
        outcomes = [t(arms) for t in tests]
        return None if any(o is None for o in outcomes) else all(outcomes)

    return Test(" and ".join(t.text for t in tests), fn)


def any_of(*tests: Test) -> Test:
    def fn(arms: Arms) -> bool | None:
        outcomes = [t(arms) for t in tests]
        return None if any(o is None for o in outcomes) else any(outcomes)

    return Test("(" + " or ".join(t.text for t in tests) + ")", fn)


def not_(test: Test) -> Test:
    def fn(arms: Arms) -> bool | None:
        outcome = test(arms)
        return None if outcome is None else not outcome

    return Test(f"not ({test.text})", fn)


@dataclass(frozen=True)
class Criterion:
    """A claim's success criterion, fixed before its runs.

    Args:
        test: the per-seed test over that seed's arms.
        min_seeds: fewer seeds with every arm than this: the verdict is ``not_run``.
        required: seeds that must pass for ``supported``; None = every seed that has every arm.
    """

    test: Test
    min_seeds: int = 3
    required: int | None = None

    @property
    def text(self) -> str:
        need = "every seed" if self.required is None else f"at least {self.required} seeds"
        return f"{self.test.text}, on {need} (≥ {self.min_seeds} seeds)"


@dataclass(frozen=True)
class Outcome:
    """What ``evaluate`` found: the verdict, seeds passing out of seeds decided, and each seed's result."""

    verdict: Verdict
    held: int
    decided: int
    per_seed: Mapping[int, bool]

    @property
    def tally(self) -> str:
        return f"{self.held}/{self.decided} seeds"


def by_seed(results: Iterable[Result]) -> dict[int, dict[str, Result]]:
    out: dict[int, dict[str, Result]] = {}
    for r in results:
        out.setdefault(r.seed, {})[r.arm] = r
    return dict(sorted(out.items()))


def evaluate(criterion: Criterion, results: Iterable[Result]) -> Outcome:
    """Apply the criterion seed by seed; a seed whose test cannot be decided (an arm missing) does not count."""
    per_seed = {}
    for seed, arms in by_seed(results).items():
        outcome = criterion.test(arms)
        if outcome is not None:
            per_seed[seed] = bool(outcome)
    held, decided = sum(per_seed.values()), len(per_seed)
    if decided < criterion.min_seeds:
        return Outcome(Verdict.not_run, held, decided, per_seed)
    needed = decided if criterion.required is None else criterion.required
    verdict = Verdict.supported if held >= needed else Verdict.contradicted
    return Outcome(verdict, held, decided, per_seed)


@dataclass(frozen=True)
class Spread:
    """Median and range of one number over seeds (non-finite values kept: a diverged run's loss is inf)."""

    median: float | None
    lo: float | None
    hi: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Spread:
        xs = sorted(float(v) for v in values if v is not None and not math.isnan(v))
        if not xs:
            return cls(None, None, None, 0)
        return cls(statistics.median(xs), xs[0], xs[-1], len(xs))


def spread(results: Iterable[Result], arm: str, key: str) -> Spread:
    """The spread over seeds of one arm's number."""
    return Spread.of(r.get(key) for r in results if r.arm == arm)


def count(results: Iterable[Result], arm: str, test: Callable[[Result], bool]) -> tuple[int, int]:
    """How many of an arm's runs pass a per-run test, out of how many runs."""
    runs = [r for r in results if r.arm == arm]
    return sum(bool(test(r)) for r in runs), len(runs)
