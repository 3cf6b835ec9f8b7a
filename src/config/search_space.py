"""The jobs a pre-flight check composes for a sweep of Hydra's override grammar, search sweepers included.

The basic sweeper enumerates every job (``a=1,2``, ``choice(...)``, ``range(...)``); a search sweeper (Optuna)
samples ``interval(low, high)``, ``tag(log, interval(...))``, ``range(start, stop[, step])`` and
``choice(...)`` and cannot be enumerated. What can be checked before the study starts is every value the
search may reach at its edges: each choice, and both bounds of each interval and range (Optuna's bounds are
inclusive: hydra-optuna-sweeper turns ``range(1, 5)`` into ``IntUniformDistribution(1, 5)``, so 5 can be
sampled, unlike the basic sweeper's Python range). Malformed bounds are refused with one line.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict

from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer

from src.config.validate import ConfigError


def _text(override: Override) -> str:
    return override.input_line or override.get_key_element()


def _bound(value: float | int) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _interval_edges(override: Override, sweep: IntervalSweep) -> list[str]:
    low, high = sweep.start, sweep.end
    assert low is not None and high is not None  # the grammar requires both
    if not low < high:
        raise ConfigError(f"{_text(override)} is not allowed; expected interval(low, high) with low < high")
    if "log" in sweep.tags and low <= 0:
        raise ConfigError(f"{_text(override)} is not allowed; a log interval needs low > 0")
    return [_bound(low), _bound(high)]


def _range_edges(override: Override, sweep: RangeSweep, search: bool) -> list[str]:
    start, stop, step = sweep.start, sweep.stop, sweep.step
    assert start is not None and stop is not None
    if step is None or step <= 0 or not start < stop:
        raise ConfigError(f"{_text(override)} is not allowed; the range is empty (expected start < stop, step > 0)")
    if search:  # sampled between start and stop, both included
        return [_bound(start), _bound(stop)]
    return [str(v) for v in override.sweep_iterator(transformer=Transformer.encode)]


def _values(override: Override, search: bool) -> list[str]:
    """The value strings of one override a pre-flight composes."""
    value = override.value()
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        if not search:
            raise ConfigError(
                f"{_text(override)} needs a search sweeper (e.g. hydra/sweeper=optuna_tpe); the basic sweeper "
                "runs lists, choice(...) and range(...)"
            )
        return _interval_edges(override, value)
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep)
        return _range_edges(override, value, search)
    if override.is_choice_sweep():
        return [str(v) for v in override.sweep_iterator(transformer=Transformer.encode)]
    return [override.get_value_element_as_str()]


def job_overrides(overrides: list[Override], search: bool) -> list[list[str]]:
    """One override list per job to compose: every job of a basic sweep; for a search sweeper (``search``),
    every combination of the search space's edges. A key given twice keeps its last value (as both sweepers
    do: the command line overrides ``hydra.sweeper.params``)."""
    per_key: OrderedDict[str, list[str]] = OrderedDict()
    for override in overrides:
        key = override.get_key_element()
        per_key[key] = [f"{key}={v}" for v in _values(override, search)]
    return [list(job) for job in itertools.product(*per_key.values())]
