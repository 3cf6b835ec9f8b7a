"""The verdict logic on made-up run summaries: each criterion both ways, seeds that cannot be decided, spreads."""

from __future__ import annotations

import math

from src.analysis.verdicts import (
    Criterion,
    Quantity,
    Result,
    Spread,
    Verdict,
    above,
    all_of,
    any_of,
    beats,
    below,
    close,
    diverges,
    evaluate,
    greater,
    indicator,
    less,
    minus,
    not_,
    sensitivity,
    solves,
    spread,
)

BASE = 1 / 6


def adding(arm: str, seed: int, final: float, status: str = "completed", **values: float) -> Result:
    best = final if math.isfinite(final) else None
    return Result(arm, seed, status, final, best, BASE, None, values)


LSTM_SOLVES_RNN_DOES_NOT = Criterion(all_of(solves("lstm"), not_(solves("rnn"))))


def test_supported_when_every_seed_passes() -> None:
    runs = [adding("lstm", s, 0.003 + s * 1e-3) for s in range(3)] + [adding("rnn", s, 0.178) for s in range(3)]
    outcome = evaluate(LSTM_SOLVES_RNN_DOES_NOT, runs)
    assert outcome.verdict is Verdict.supported and outcome.tally == "3/3 seeds"


def test_contradicted_when_one_seed_fails() -> None:
    # seed 2's LSTM ends at 0.12x the baseline: not solved, so "solves on 3/3 seeds" is contradicted
    runs = [adding("lstm", 0, 0.003), adding("lstm", 1, 0.004), adding("lstm", 2, 0.12 * BASE)]
    runs += [adding("rnn", s, 0.178) for s in range(3)]
    outcome = evaluate(LSTM_SOLVES_RNN_DOES_NOT, runs)
    assert outcome.verdict is Verdict.contradicted
    assert outcome.per_seed == {0: True, 1: True, 2: False} and outcome.tally == "2/3 seeds"


def test_required_count_allows_a_failing_seed() -> None:
    runs = [adding("lstm", 0, 0.003), adding("lstm", 1, 0.004), adding("lstm", 2, 0.12 * BASE)]
    runs += [adding("rnn", s, 0.178) for s in range(3)]
    assert evaluate(Criterion(LSTM_SOLVES_RNN_DOES_NOT.test, required=2), runs).verdict is Verdict.supported


def test_seeds_missing_an_arm_are_not_decided() -> None:
    # three LSTM seeds but only two RNN seeds: two decided seeds are fewer than the three the criterion needs
    runs = [adding("lstm", s, 0.003) for s in range(3)] + [adding("rnn", s, 0.178) for s in range(2)]
    outcome = evaluate(LSTM_SOLVES_RNN_DOES_NOT, runs)
    assert outcome.verdict is Verdict.not_run and outcome.decided == 2
    assert evaluate(Criterion(LSTM_SOLVES_RNN_DOES_NOT.test, min_seeds=2), runs).verdict is Verdict.supported


def test_a_diverged_run_neither_solves_nor_beats() -> None:
    runs = [adding("noclip", 0, math.inf, "diverged"), adding("clip", 0, 0.009)]
    arms = {r.arm: r for r in runs}
    assert diverges("noclip")(arms) and not diverges("clip")(arms)
    assert solves("clip")(arms) and not solves("noclip")(arms) and not beats("noclip")(arms)
    assert not solves("noclip", key="best")(arms)  # no finite validation at all
    # a finite loss is below an infinite one; an infinite one is below nothing
    assert less("clip", "noclip", "final")(arms) and not less("noclip", "clip", "final")(arms)


def test_beats_is_a_ten_percent_margin() -> None:
    arms = {"a": adding("a", 0, 0.89 * BASE), "b": adding("b", 0, 0.91 * BASE)}
    assert beats("a")(arms) and not beats("b")(arms)


def test_numbers_by_name_and_ratio_tests() -> None:
    # the clipping-length claim: the unclipped/clipped loss gap is larger at T = 50 than at T = 10
    gap = {"T10": 1.1, "T50": math.inf}
    arms = {name: Result(name, 0, values={"gap": g}) for name, g in gap.items()}
    assert above("T50", "gap", 10.0)(arms) and not above("T10", "gap", 10.0)(arms)
    assert below("T10", "gap", 2.0)(arms) and not below("T50", "gap", 2.0)(arms)  # inf is not below anything
    assert less("T10", "T50", "gap")(arms) is True and less("T50", "T10", "gap")(arms) is False
    assert less("T10", "T50", "missing")(arms) is False  # a number the run does not have fails the test
    assert below("T99", "gap", 2.0)(arms) is None  # an arm that is not there: undecided


def test_close_to_a_printed_number() -> None:
    # the seed prints 2.786 for 12 x 5/sqrt(464) = 2.785430: off by more than half a unit of its last digit
    arms = {"example": Result("example", 0, values={"g2": 12 * 5 / math.sqrt(464), "g1": 16 * 5 / math.sqrt(464)})}
    assert close("example", "g1", 3.714, 0.0005)(arms)
    assert not close("example", "g2", 2.786, 0.0005)(arms)


def test_combinators_propagate_undecided_and_describe_themselves() -> None:
    arms = {"a": adding("a", 0, 0.001)}
    assert all_of(solves("a"), solves("b"))(arms) is None
    assert any_of(solves("a"), beats("a"))(arms) is True
    assert not_(solves("b"))(arms) is None
    text = LSTM_SOLVES_RNN_DOES_NOT.text
    assert "lstm solves (final < 0.1× baseline)" in text and "not (rnn solves" in text and "every seed" in text


def test_spread_is_median_and_range_over_seeds() -> None:
    runs = [adding("lstm", s, v) for s, v in enumerate([0.004, 0.002, 0.003])] + [adding("rnn", 0, 0.17)]
    s = spread(runs, "lstm", "final")
    assert (s.median, s.lo, s.hi, s.n) == (0.003, 0.002, 0.004, 3)
    ratio = spread(runs, "lstm", "final_ratio")
    assert math.isclose(ratio.median, 0.003 / BASE)
    assert Spread.of([]) == Spread(None, None, None, 0)
    assert Spread.of([1.0, math.inf, 2.0]).hi == math.inf  # a diverged seed's loss stays in the range


def gap(t: int) -> Quantity:
    return minus(indicator(solves(f"T{t} clip")), indicator(solves(f"T{t} none")))


GAP_GROWS = Criterion(greater(gap(50), gap(10)))


def test_the_clipping_gap_grows_with_length_or_not() -> None:
    # Pascanu et al. 2013: success with clipping minus success without, larger at the longer sequence
    def seed(s: int, short_none: float, long_none: float, long_status: str) -> list[Result]:
        return [
            adding("T10 clip", s, 0.005),
            adding("T10 none", s, short_none),
            adding("T50 clip", s, 0.008),
            adding("T50 none", s, long_none, long_status),
        ]

    grows = [r for s in range(3) for r in seed(s, 0.006, math.inf, "diverged")]
    assert evaluate(GAP_GROWS, grows).verdict is Verdict.supported
    # unclipped runs that solve at both lengths: the gap is 0 at both, it does not grow
    flat = [r for s in range(3) for r in seed(s, 0.006, 0.007, "completed")]
    outcome = evaluate(GAP_GROWS, flat)
    assert outcome.verdict is Verdict.contradicted and outcome.held == 0
    assert "T50 clip solves" in GAP_GROWS.text


def sweep(qk: str, seed: int, finals: list[float], initial: float = 2.3) -> list[Result]:
    return [
        Result(f"{qk} lr={lr}", seed, "diverged" if f == math.inf else "completed", f, None, 1.649, None,
               {"train_initial": initial})
        for lr, f in zip(("0.001", "0.01", "0.1"), finals, strict=True)
    ]  # fmt: skip


def test_lr_sensitivity_by_hand_both_ways() -> None:
    without, with_qk = (
        [f"qk=false lr={lr}" for lr in ("0.001", "0.01", "0.1")],
        [f"qk=true lr={lr}" for lr in ("0.001", "0.01", "0.1")],
    )
    # without qk_norm: 0.1 diverges (its inf counts as the step-0 loss 2.3); with it: every lr trains
    runs = sweep("qk=false", 0, [0.5, 0.01, math.inf]) + sweep("qk=true", 0, [0.5, 0.02, 0.3])
    arms = {r.arm: r for r in runs}
    assert math.isclose(sensitivity(without)(arms), (0.5 + 0.01 + 2.3) / 3 - 0.01)
    assert math.isclose(sensitivity(with_qk)(arms), (0.5 + 0.02 + 0.3) / 3 - 0.02)
    qk_helps = Criterion(greater(sensitivity(without), sensitivity(with_qk)), min_seeds=1)
    assert evaluate(qk_helps, runs).verdict is Verdict.supported
    # the other outcome: with qk_norm lr 0.001 barely trains, 0.1 fails and the best is worse: 1.3 > 0.927
    runs = sweep("qk=false", 0, [0.5, 0.01, math.inf]) + sweep("qk=true", 0, [2.0, 0.2, math.inf])
    assert evaluate(qk_helps, runs).verdict is Verdict.contradicted
    assert sensitivity(without)({r.arm: r for r in runs[:2]}) is None  # an arm missing: undecided
