"""How each claim of src/analysis/published.py is tested: the experiments it reads, how their runs are labelled
(arms), the criterion fixed before the runs, and the numbers the claims table shows.

A claim either reads runs of the suite (``experiments`` + ``arm`` + ``criterion``), or worked examples computed
here with the same torch function Lightning's clipping calls (``compute``), or carries its verdict because no
run of this scale can test it (``fixed`` = not testable, with ``note`` saying what scale would) or because it is
advice about tooling (``fixed`` = tooling only, ``note`` pointing at the tool). ``evaluate_claims`` returns one
row per claim for the report.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from src.analysis import published as pub
from src.analysis import results as res
from src.analysis import verdicts as v
from src.analysis.runs import Run, collect
from src.analysis.verdicts import Criterion, Outcome, Result, Spread, Verdict

Arm = Callable[[Run], str | None]


# --- arms: how a run is labelled within its comparison ---------------------------------------------------------
_FIELD = re.compile(r"\{([^{}]+)\}")


def _value(run: Run, key: str) -> Any:
    """A run's setting: ``clip`` and ``choices.<group>`` from its summary, any other dotted key from its config."""
    if key == "clip":
        return run.summary.get("clip")
    if key.startswith("choices."):
        return run.summary.get("choices", {}).get(key.removeprefix("choices."), "?")
    return run.cfg(key)


def _text(key: str, value: Any) -> str:
    if value is None and key == "clip":
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def labels(template: str, where: dict[str, Any] | None = None) -> Arm:
    """An arm: each ``{key}`` of ``template`` replaced by the run's setting (``_value``; floats as ``:g``, booleans
    lower-case, no clip as ``none``); None for a run whose settings differ from ``where``."""

    def arm(run: Run) -> str | None:
        if any(_value(run, key) != wanted for key, wanted in (where or {}).items()):
            return None
        return _FIELD.sub(lambda m: _text(m.group(1), _value(run, m.group(1))), template)

    return arm


T50 = {"data.seq_len": 50}
rnn_arm = labels("T{data.seq_len} clip={clip}")  # flagship, vanishing, clip_length
clip_arm = labels("clip={clip}", T50)  # clip_sweep and the flagship pair
model_arm = labels("{choices.model}")
chain_arm = labels("w={model.init_value} n={model.depth}")
mlp_arm = labels("{model.activation} {model.init} d{model.depth}")
activation_arm = labels("{model.activation} d{model.depth}")
norm_arm = labels("{model.norm} res={model.residual}")
norm_only_arm = labels("{model.norm}")
batch_norm_arm = labels("{model.norm} b{data.batch_size}")
lr_arm = labels("lr={optimizer.lr} clip={clip}", T50)
optimizer_arm = labels("{choices.optimizer}")
batch_arm = labels("b{data.batch_size}")
wd_arm = labels("wd={optimizer.weight_decay}", {"clip": None, **T50})
block_arm = labels("{model.norm_position} d{model.depth}")  # transformer_init_profile
warmup_arm = labels("{model.norm_position} {choices.scheduler}")
qk_arm = labels("qk={model.qk_norm} lr={optimizer.lr}")
precision_arm = labels("{trainer.precision}")


def early_arm(run: Run) -> str:
    return "early stopping" if run.cfg("callbacks.early_stopping") else "no early stopping"


LR_SWEEP = ("0.0001", "0.001", "0.01", "0.1", "1")  # conf/experiment/transformer_lr_sweep.yaml


@dataclass(frozen=True)
class Show:
    """One number of the claims table: an arm's ``key`` over seeds as median (min–max), under ``label``."""

    arm: str
    key: str
    label: str
    digits: int = 3


@dataclass(frozen=True)
class Claim:
    """How one claim of ``published.CLAIMS`` is tested.

    Args:
        key: the claim's key in published.CLAIMS.
        experiments: the suite's experiments whose runs it reads (their commands are the table's).
        arm: labels a run of those experiments (None: not part of this comparison).
        criterion: the per-seed test, fixed before the runs.
        show: the measured numbers the table prints.
        compute: worked examples computed here instead of runs (one Result each).
        fixed: the verdict of a claim no run tests (not testable at this scale / tooling only).
        note: for fixed verdicts, the scale that would test it or the tool; otherwise a caveat.
        test: the unit test that checks the same numbers.
        derived: numbers computed from each seed's arms together (an LR sensitivity), shown over seeds.
    """

    key: str
    experiments: tuple[str, ...] = ()
    arm: Arm | None = None
    criterion: Criterion | None = None
    show: tuple[Show, ...] = ()
    compute: Callable[[], list[Result]] | None = None
    fixed: Verdict | None = None
    note: str = ""
    test: str = ""
    derived: tuple[tuple[str, v.Quantity], ...] = ()


# --- worked examples (the same function Lightning's gradient_clip_val calls) ----------------------------------
def _clip_grads(*grads: list[float], max_norm: float) -> tuple[float, list[list[float]]]:
    params = [torch.nn.Parameter(torch.zeros(len(g), dtype=torch.float64)) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.tensor(g, dtype=torch.float64)
    norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    return norm, [p.grad.tolist() for p in params if p.grad is not None]


def clip_examples() -> list[Result]:
    """Seed 1's clipping example and its questions 2 and 4, through torch.nn.utils.clip_grad_norm_."""
    norm, [g] = _clip_grads([16.0, 12.0, -8.0], max_norm=5.0)
    after = math.sqrt(sum(x * x for x in g))
    cosine = sum(a * b for a, b in zip(g, [16.0, 12.0, -8.0], strict=True)) / (after * norm)
    example = Result("[16,12,-8] to 5", 0, values={"norm": norm, "g1": g[0], "g2": g[1], "g3": g[2],
                                                    "norm_after": after, "cosine": cosine})  # fmt: skip
    n34, [a] = _clip_grads([3.0, 4.0], max_norm=2.0)
    n68, [b] = _clip_grads([6.0, 8.0], max_norm=2.0)
    same = sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))
    q2 = Result("[3,4] to 2", 0, values={"norm": n34, "scale": a[0] / 3.0, "g1": a[0], "g2": a[1], "cosine_68": same,
                                         "norm_68": n68})  # fmt: skip
    n4, [w1, w2] = _clip_grads([100.0, 0.0], [0.0, 0.1], max_norm=1.0)
    q4 = Result("W1,W2 to 1", 0, values={"norm": n4, "w1": w1[0], "w2": w2[1], "w2_shrink": 0.1 / w2[1]})
    return [example, q2, q4]


def bound_example() -> list[Result]:
    """Pascanu et al.'s bound measured: ‖dL/dh_t‖ through a tanh RNN whose W_hh has σ_max = 0.9 (< 1/γ = 1)."""
    gen = torch.Generator().manual_seed(0)
    hidden, steps, sigma = 32, 50, 0.9
    w_hh = torch.nn.init.orthogonal_(torch.empty(hidden, hidden, dtype=torch.float64), gain=sigma, generator=gen)
    w_ih = torch.randn(hidden, 1, dtype=torch.float64, generator=gen)
    h = torch.zeros(hidden, dtype=torch.float64, requires_grad=True)
    states = []
    for x in torch.randn(steps, 1, dtype=torch.float64, generator=gen):
        h = torch.tanh(w_ih @ x + w_hh @ h)
        h.retain_grad()
        states.append(h)
    h.sum().backward()
    norms = [float(torch.linalg.vector_norm(state.grad)) for state in states]
    bound = max(n / (sigma ** (steps - 1 - t) * norms[-1]) for t, n in enumerate(norms))
    return [Result("σ=0.9 T=50", 0, values={"first_last": norms[0] / norms[-1], "bound_ratio": bound})]


# --- the criteria -----------------------------------------------------------------------------------------------
def _printed(arm: str, key: str, number: float, unit: float) -> v.Test:
    """Equal to a printed number to its precision: within one unit of its last digit (rounded or cut)."""
    return v.close(arm, key, number, unit)


def _chain_deltas(arm: str, w: float, n: int) -> v.Test:
    return v.all_of(*(v.close(arm, f"delta/{layer}", w ** (n - layer), 1e-6 * w ** (n - layer)) for layer in
                      range(1, n + 1)))  # fmt: skip


def _explodes(arm: str) -> v.Test:
    """Diverged, or the largest finite norm ≥ 100x the step-0 norm."""
    return v.any_of(v.diverges(arm), v.above(arm, "grad_growth", 100.0))


def _success_gap(t: int) -> v.Quantity:
    clipped, unclipped = f"T{t} clip=1", f"T{t} clip=none"
    return v.minus(v.indicator(v.solves(clipped, "best")), v.indicator(v.solves(unclipped, "best")))


ONE = {"min_seeds": 1}

CLAIMS: list[Claim] = [
    # --- seed 1's worked example ----------------------------------------------------------------------------
    Claim(
        "chain.delta",
        ("seed_chain",),
        chain_arm,
        Criterion(v.all_of(_chain_deltas("w=2 n=5", 2.0, 5), v.close("w=2 n=5", "grad_1", 16.0, 0.0)), **ONE),
        (Show("w=2 n=5", "delta_1", "δ₁"), Show("w=2 n=5", "grad_1", "∂L/∂W₁")),
        test="tests/test_reproduce.py::test_seed_chain_numbers_through_the_run_path",
    ),
    Claim(
        "chain.update",
        ("seed_chain",),
        chain_arm,
        Criterion(_printed("w=2 n=5", "update_1", pub.SEED_STEP_CHANGE, 0.1), **ONE),
        (Show("w=2 n=5", "update_1", "|ΔW₁| at lr 0.1"),),
    ),
    Claim(
        "chain.depth20",
        ("seed_chain",),
        chain_arm,
        Criterion(
            v.all_of(
                v.close("w=2 n=20", "delta_1", pub.SEED_DEPTH20_DELTA1, 0.0),
                _printed("w=2 n=20", "update_1", pub.SEED_DEPTH20_UPDATE, 1.0),
            ),
            **ONE,
        ),
        (Show("w=2 n=20", "delta_1", "δ₁", 7), Show("w=2 n=20", "update_1", "|ΔW₁|", 7)),
        note="the seed's 52,428 is 0.1·2¹⁹ = 52,428.8 cut to an integer",
    ),
    Claim(
        "chain.listing",
        ("seed_chain",),
        chain_arm,
        Criterion(
            v.all_of(
                *(
                    _printed("w=0.5 n=5", f"delta/{i + 1}", x, 10 ** -len(f"{x}".split(".")[1]))
                    for i, x in enumerate(pub.SEED_LISTING_PRINTED[0.5])
                )
            ),
            **ONE,
        ),
        (Show("w=0.5 n=5", "delta/1", "w=0.5 δ₁"), Show("w=0.5 n=5", "delta/5", "w=0.5 δ₅")),
        note="the listing stores δ after multiplying by w: it prints w^(n−l+1), one layer off; its w=2 line "
        "(16 … 1) is not what that code prints (32 … 2)",
    ),
    Claim(
        "chain.crossover",
        ("seed_chain",),
        chain_arm,
        Criterion(
            v.all_of(
                _chain_deltas("w=1 n=101", 1.0, 101),
                v.below("w=0.99 n=101", "delta_1", 1.0),
                v.above("w=1.01 n=101", "delta_1", 1.0),
            ),
            **ONE,
        ),
        (Show("w=1 n=101", "delta_1", "w=1 δ₁"),),
    ),
    Claim(
        "q1",
        ("seed_chain",),
        chain_arm,
        Criterion(
            v.all_of(v.close("w=3 n=5", "delta_1", 81.0, 1e-4), v.close("w=0.9 n=5", "delta_1", 0.6561, 1e-6)), **ONE
        ),
        (Show("w=3 n=5", "delta_1", "w=3 δ₁", 5), Show("w=0.9 n=5", "delta_1", "w=0.9 δ₁", 5)),
    ),
    Claim(
        "q3",
        ("seed_chain",),
        chain_arm,
        Criterion(
            v.all_of(
                _printed("w=1.01 n=101", "delta_1", 2.705, 0.001), _printed("w=0.99 n=101", "delta_1", 0.366, 0.001)
            ),
            **ONE,
        ),
        (Show("w=1.01 n=101", "delta_1", "1.01: δ₁", 5), Show("w=0.99 n=101", "delta_1", "0.99: δ₁", 5)),
    ),
    Claim(
        "clip.example",
        compute=clip_examples,
        criterion=Criterion(
            v.all_of(
                v.close("[16,12,-8] to 5", "norm", 21.54, 0.01),
                v.close("[16,12,-8] to 5", "norm_after", 5.0, 1e-5),
                v.close("[16,12,-8] to 5", "cosine", 1.0, 1e-12),
                *(_printed("[16,12,-8] to 5", f"g{i + 1}", x, 0.01) for i, x in enumerate(pub.SEED_CLIP_TEXT)),
                *(_printed("[16,12,-8] to 5", f"g{i + 1}", x, 0.001) for i, x in enumerate(pub.SEED_CLIP_LISTING)),
            ),
            **ONE,
        ),
        show=(
            Show("[16,12,-8] to 5", "g1", "g₁", 7),
            Show("[16,12,-8] to 5", "g2", "g₂", 7),
            Show("[16,12,-8] to 5", "g3", "g₃", 7),
        ),
        note="12·5/√464 = 2.785430: the listing's 2.786 is within its last digit, not rounded from it",
        test="tests/test_clipping.py::test_seed_global_norm_example",
    ),
    Claim(
        "q2",
        compute=clip_examples,
        criterion=Criterion(
            v.all_of(
                v.close("[3,4] to 2", "norm", 5.0, 1e-9),
                v.close("[3,4] to 2", "scale", 0.4, 1e-6),
                v.close("[3,4] to 2", "g1", 1.2, 1e-6),
                v.close("[3,4] to 2", "g2", 1.6, 1e-6),
                v.close("[3,4] to 2", "cosine_68", 1.0, 1e-12),
            ),
            **ONE,
        ),
        show=(Show("[3,4] to 2", "g1", "g₁"), Show("[3,4] to 2", "g2", "g₂")),
        test="tests/test_clipping.py::test_seed_question_2_same_direction",
    ),
    Claim(
        "q4",
        compute=clip_examples,
        criterion=Criterion(
            v.all_of(v.close("W1,W2 to 1", "w2", 0.001, 1e-6), v.above("W1,W2 to 1", "w2_shrink", 99.0)), **ONE
        ),
        show=(Show("W1,W2 to 1", "w1", "W₁ clipped"), Show("W1,W2 to 1", "w2", "W₂ clipped")),
        note="not desirable: a global clip scales the small layer's update down with the large one "
        "(clipping=layerwise clips each layer on its own)",
        test="tests/test_clipping.py::test_seed_question_4_global_clipping_starves_the_small_layer",
    ),
    Claim(
        "q5",
        fixed=Verdict.tooling,
        note="the DivergenceGuard (first non-finite layer and step), grad/norm_total_preclip and grad/layer/* "
        "per step, update_ratio/layer/*, the run summary's diagnosis (scripts/diagnose.py)",
    ),
    # --- causes ---------------------------------------------------------------------------------------------
    Claim(
        "init.normal",
        ("init_study",),
        mlp_arm,
        Criterion(
            v.all_of(
                *(
                    v.any_of(
                        v.diverges(f"{a} normal d{d}"), v.less(f"{a} he d{d}", f"{a} normal d{d}", "grad_first", 0.01)
                    )
                    for a in ("relu", "tanh")
                    for d in (20, 50)
                )
            )
        ),
        (
            Show("tanh normal d20", "grad_first", "tanh N(0,1) d20 ‖∇W₁‖"),
            Show("tanh he d20", "grad_first", "tanh He d20"),
            Show("relu normal d20", "divergence_step", "relu N(0,1) d20 diverged at step"),
        ),
    ),
    Claim(
        "init.he_xavier",
        ("init_study",),
        mlp_arm,
        Criterion(
            v.all_of(
                *(
                    v.all_of(v.above(f"{a} {i} d50", "grad_ratio", 0.1), v.below(f"{a} {i} d50", "grad_ratio", 10.0))
                    for a in ("relu", "tanh")
                    for i in ("he", "xavier")
                )
            )
        ),
        (
            Show("relu he d50", "grad_ratio", "relu He d50 ‖∇W₁‖/‖∇head‖"),
            Show("relu xavier d50", "grad_ratio", "relu Xavier d50"),
            Show("tanh he d50", "grad_ratio", "tanh He d50"),
            Show("tanh xavier d50", "grad_ratio", "tanh Xavier d50"),
        ),
    ),
    Claim(
        "depth",
        ("init_study",),
        mlp_arm,
        Criterion(
            v.all_of(
                *(
                    v.any_of(
                        v.diverges(f"{a} normal d{d2}"), v.less(f"{a} normal d{d1}", f"{a} normal d{d2}", "grad_first")
                    )
                    for a in ("relu", "tanh")
                    for d1, d2 in ((5, 10), (10, 20), (20, 50))
                )
            )
        ),
        tuple(Show(f"tanh normal d{d}", "grad_first", f"tanh N(0,1) d{d}") for d in (5, 10, 20, 50)),
    ),
    Claim(
        "rnn.clipping",
        ("flagship",),
        rnn_arm,
        Criterion(v.all_of(v.not_(v.beats("T50 clip=none")), v.solves("T50 clip=1", "best"))),
        (
            Show("T50 clip=none", "divergence_step", "unclipped diverged at step"),
            Show("T50 clip=1", "best_ratio", "clipped best val / baseline"),
        ),
        note="the vanilla tanh RNN; gated cells are not run unclipped here",
    ),
    Claim(
        "lr",
        ("lr_clip", "flagship"),
        lr_arm,
        Criterion(
            v.all_of(
                v.not_(v.diverges("lr=0.005 clip=none")),
                v.diverges("lr=0.02 clip=none"),
                v.not_(v.diverges("lr=0.02 clip=1")),
                v.less("lr=0.02 clip=1", "lr=0.2 clip=1", "final"),
            )
        ),
        (
            Show("lr=0.005 clip=none", "final_ratio", "lr 0.005 unclipped final/baseline"),
            Show("lr=0.02 clip=none", "divergence_step", "lr 0.02 unclipped diverged at step"),
            Show("lr=0.2 clip=none", "divergence_step", "lr 0.2 unclipped diverged at step"),
            Show("lr=0.02 clip=1", "final_ratio", "lr 0.02 clipped final/baseline"),
            Show("lr=0.2 clip=1", "final_ratio", "lr 0.2 clipped"),
        ),
    ),
    Claim(
        "activations.explode",
        ("activations",),
        activation_arm,
        Criterion(v.any_of(*(_explodes(f"{a} d{d}") for a in ("relu", "leaky_relu", "elu", "silu") for d in (20, 50)))),
        tuple(
            Show(f"{a} d50", "grad_growth", f"{a} d50 max/step-0 ‖g‖") for a in ("relu", "leaky_relu", "elu", "silu")
        ),
        note="at variance-preserving gains (He-style, each activation's computed gain)",
    ),
    Claim(
        "activations.mitigate",
        ("activations",),
        activation_arm,
        Criterion(
            v.all_of(
                *(v.less(f"{a} d{d}", f"relu d{d}", "max_grad_norm") for a in ("leaky_relu", "elu") for d in (20, 50))
            )
        ),
        (
            Show("relu d50", "max_grad_norm", "relu d50 max ‖g‖"),
            Show("leaky_relu d50", "max_grad_norm", "leaky"),
            Show("elu d50", "max_grad_norm", "elu"),
        ),
    ),
    # --- symptoms (the flagship's unclipped runs) -------------------------------------------------------------
    Claim(
        "symptom.nan",
        ("flagship",),
        rnn_arm,
        Criterion(v.all_of(v.diverges("T50 clip=none"), v.beats("T50 clip=none", "best"))),
        (
            Show("T50 clip=none", "divergence_step", "diverged at step"),
            Show("T50 clip=none", "best_ratio", "best val / baseline before"),
        ),
    ),
    Claim(
        "symptom.weights",
        ("flagship",),
        rnn_arm,
        Criterion(v.above("T50 clip=none", "weight_monotone", 0.5)),
        (Show("T50 clip=none", "weight_growth", "‖W‖ at divergence / step 0"),),
    ),
    Claim(
        "symptom.norm",
        ("flagship",),
        rnn_arm,
        Criterion(v.above("T50 clip=none", "rise_steps", 500.0)),
        (Show("T50 clip=none", "rise_steps", "steps from < 10× to > 1000× the step-0 norm"),),
        note="an epoch here is 100 steps",
    ),
    # --- clipping --------------------------------------------------------------------------------------------
    Claim(
        "clip.standard",
        ("flagship",),
        rnn_arm,
        Criterion(v.solves("T50 clip=1", "best")),
        (Show("T50 clip=1", "steps_to_solve", "steps to solve"), Show("T50 clip=1", "final_ratio", "final/baseline")),
    ),
    Claim(
        "clip.tradeoff",
        ("clip_sweep", "flagship"),
        clip_arm,
        Criterion(
            v.all_of(
                v.any_of(v.not_(v.solves("clip=0.08", "best")), v.less("clip=1", "clip=0.08", "steps_to_solve")),
                v.any_of(v.diverges("clip=16"), v.less("clip=1", "clip=16", "max_grad_norm", 0.1)),
            )
        ),
        (
            Show("clip=0.08", "steps_to_solve", "clip 0.08: steps to solve"),
            Show("clip=1", "steps_to_solve", "clip 1"),
            Show("clip=16", "max_grad_norm", "clip 16: max ‖g‖"),
            Show("clip=1", "max_grad_norm", "clip 1: max ‖g‖"),
        ),
    ),
    Claim(
        "pascanu.threshold",
        ("clip_sweep", "flagship"),
        clip_arm,
        Criterion(v.all_of(*(v.solves(f"clip={c}", "best") for c in ("0.8", "1", "5", "16")))),
        tuple(
            Show(f"clip={c}", "steps_to_solve", f"clip {c}: steps to solve") for c in ("0.08", "0.8", "1", "5", "16")
        ),
        note="the mean pre-clip norm of the clip=1 runs (over steps ≥ 100) is the reference: an unclipped "
        "run's average is undefined (it overflows)",
    ),
    Claim(
        "pascanu.length",
        ("clip_length", "flagship"),
        rnn_arm,
        Criterion(v.greater(_success_gap(50), _success_gap(10))),
        (
            Show("T10 clip=none", "best_ratio", "T10 unclipped best/baseline"),
            Show("T10 clip=1", "best_ratio", "T10 clipped"),
            Show("T50 clip=none", "divergence_step", "T50 unclipped diverged at"),
            Show("T50 clip=1", "best_ratio", "T50 clipped"),
        ),
    ),
    Claim(
        "clip.vanishing",
        ("vanishing",),
        rnn_arm,
        Criterion(
            v.all_of(
                v.diverges("T200 clip=none"),
                v.not_(v.diverges("T200 clip=1")),
                v.not_(v.beats("T200 clip=1")),
                v.below("T200 clip=1", "time_ratio", 1e-3),
            )
        ),
        (
            Show("T200 clip=1", "final_ratio", "clipped final/baseline"),
            Show("T200 clip=1", "time_ratio", "‖dL/dh₀‖/‖dL/dh_T‖"),
        ),
        note="T = 200 here, shorter than the seed's 500+",
    ),
    Claim(
        "pascanu.bound",
        compute=bound_example,
        criterion=Criterion(
            v.all_of(
                v.below("σ=0.9 T=50", "bound_ratio", 1.0 + 1e-5),
                v.below("σ=0.9 T=50", "first_last", 0.9**49),
            ),
            **ONE,
        ),
        show=(
            Show("σ=0.9 T=50", "first_last", "‖dL/dh₀‖/‖dL/dh₄₉‖"),
            Show("σ=0.9 T=50", "bound_ratio", "largest ‖dL/dh_t‖ / (0.9^(49−t)·‖dL/dh₄₉‖)"),
        ),
        note="a tanh RNN (hidden 32) with σ_max(W_hh) = 0.9, unrolled by hand in float64; with 1.1 the flagship "
        "explodes",
        test="tests/test_telemetry_through_time.py::"
        "test_tanh_rnn_below_the_pascanu_bound_decays_at_least_geometrically",
    ),
    Claim(
        "clip.rules",
        fixed=Verdict.tooling,
        note="clipping=layerwise | agc | autoclip | zclip and loss.grad_penalty, each tested against a hand "
        "computation (tests/test_clipping.py); no experiment here ranks them",
    ),
    # --- normalisation, residuals, optimisers, regularisation ----------------------------------------------------
    Claim(
        "bn.prevents",
        ("norm_residual",),
        norm_arm,
        Criterion(v.below("batchnorm res=false", "grad_ratio", 10.0)),
        (
            Show("batchnorm res=false", "grad_ratio", "BN, plain: ‖∇W₁‖/‖∇head‖ at step 0"),
            Show("none res=false", "grad_ratio", "no norm, plain"),
        ),
        note="depth 50, He init: BatchNorm itself makes the step-0 gradient grow toward the input (Yang et al. 2019)",
    ),
    Claim(
        "residual",
        ("norm_residual",),
        norm_arm,
        Criterion(v.all_of(v.not_(v.diverges("none res=true")), v.beats("none res=true"))),
        (
            Show("none res=true", "divergence_step", "residual, no norm: diverged at step"),
            Show("none res=false", "final_ratio", "plain, no norm: final/baseline"),
        ),
        note="He init at depth 50: each block adds its input back, so the forward variance doubles per block",
    ),
    Claim(
        "residual.norm",
        ("norm_residual",),
        norm_arm,
        Criterion(
            v.all_of(
                *(
                    v.all_of(v.solves(f"{n} res=true"), v.not_(v.solves(f"{n} res=false")))
                    for n in ("layernorm", "batchnorm")
                )
            )
        ),
        (
            Show("layernorm res=true", "final_ratio", "residual + LN final/baseline"),
            Show("layernorm res=false", "final_ratio", "plain + LN"),
            Show("batchnorm res=true", "final_ratio", "residual + BN"),
            Show("batchnorm res=false", "final_ratio", "plain + BN"),
        ),
    ),
    Claim(
        "bn.small_batch",
        ("bn_small_batch",),
        batch_norm_arm,
        Criterion(
            v.greater(
                v.ratio(v.value("batchnorm b4", "final"), v.value("layernorm b4", "final")),
                v.ratio(v.value("batchnorm b64", "final"), v.value("layernorm b64", "final")),
            )
        ),
        (
            Show("batchnorm b4", "final_ratio", "BN b4 final/baseline"),
            Show("layernorm b4", "final_ratio", "LN b4"),
            Show("batchnorm b64", "final_ratio", "BN b64"),
            Show("layernorm b64", "final_ratio", "LN b64"),
        ),
        note="the RNN half (layer norm for RNNs) is not tested: no LayerNorm RNN here",
    ),
    Claim(
        "bn.higher_lr",
        ("bn_lr",),
        norm_only_arm,
        Criterion(
            v.all_of(
                v.any_of(v.diverges("none"), v.not_(v.beats("none"))),
                v.not_(v.diverges("batchnorm")),
                v.solves("batchnorm"),
            )
        ),
        (
            Show("none", "divergence_step", "no norm: diverged at step"),
            Show("batchnorm", "final_ratio", "BatchNorm: final/baseline"),
        ),
        note="lr 0.1, 10x the init study's",
    ),
    Claim(
        "optimizers",
        ("optimizers",),
        optimizer_arm,
        Criterion(
            v.all_of(
                v.diverges("sgd"),
                *(v.all_of(v.not_(v.diverges(o)), v.beats(o)) for o in ("adam", "rmsprop", "adagrad")),
            )
        ),
        tuple(Show(o, "final_ratio", f"{o} final/baseline") for o in ("sgd", "adam", "rmsprop", "adagrad")),
    ),
    Claim(
        "weight_decay",
        ("weight_decay",),
        wd_arm,
        Criterion(v.any_of(*(v.all_of(v.not_(v.diverges(f"wd={wd}")), v.beats(f"wd={wd}")) for wd in ("0.01", "0.1")))),
        (
            Show("wd=0.01", "divergence_step", "wd 0.01: diverged at step"),
            Show("wd=0.1", "final_ratio", "wd 0.1: final/baseline"),
            Show("wd=0.1", "divergence_step", "wd 0.1: diverged at step"),
        ),
        note="weight decay 0 is the flagship's unclipped run: it diverges on every seed",
    ),
    Claim(
        "batch_size",
        ("batch_size",),
        batch_arm,
        Criterion(v.greater(v.value("b8", "grad_norm_cv"), v.value("b256", "grad_norm_cv"))),
        (Show("b8", "grad_norm_cv", "batch 8: std/mean of ‖g‖"), Show("b256", "grad_norm_cv", "batch 256")),
    ),
    Claim(
        "early_stopping",
        ("early_stopping",),
        early_arm,
        Criterion(
            v.all_of(
                v.diverges("early stopping"),
                v.diverges("no early stopping"),
                v.below("early stopping", "steps_after_divergence", 101.0),
                v.not_(v.below("no early stopping", "steps_after_divergence", 101.0)),
            )
        ),
        (
            Show("early stopping", "divergence_step", "diverged at step"),
            Show("early stopping", "steps_after_divergence", "early stopping: steps run after it"),
            Show("no early stopping", "steps_after_divergence", "without: steps run after it"),
        ),
        note="it stops the run, not the explosion; its best checkpoint is whatever came before",
    ),
    Claim(
        "monitoring",
        fixed=Verdict.tooling,
        note="GradNormMonitor (total and per-layer pre/post-clip norms), HistogramMonitor (non-finite values "
        "counted), WeightMonitor (weight norms, update ratios), DivergenceGuard (NaN/Inf, spikes), compare.py",
    ),
    # --- papers --------------------------------------------------------------------------------------------------
    Claim(
        "arjovsky.rnn",
        ("gated_adding",),
        model_arm,
        Criterion(v.not_(v.beats("rnn"))),
        (Show("rnn", "final_ratio", "tanh RNN final/baseline"), Show("rnn", "best_ratio", "best")),
        note="tested at T = 100 only",
    ),
    Claim(
        "arjovsky.lstm",
        ("gated_adding",),
        model_arm,
        Criterion(v.solves("lstm")),
        (
            Show("lstm", "final_ratio", "LSTM final/baseline"),
            Show("lstm", "steps_to_solve", "steps to solve"),
            Show("gru", "final_ratio", "GRU final/baseline"),
        ),
        note="tested at T = 100 only; T = 200–400 need 20k+ steps (--scale paper)",
    ),
    Claim(
        "arjovsky.copy",
        ("copy_memory",),
        model_arm,
        Criterion(
            v.all_of(
                *(v.all_of(v.beats(m), v.above(m, "acc", 0.25 - 1e-12)) for m in ("lstm", "gru")),
                v.not_(v.beats("rnn")),
            )
        ),
        (
            Show("lstm", "acc", "LSTM recalled-symbol accuracy"),
            Show("gru", "acc", "GRU"),
            Show("rnn", "acc", "tanh RNN"),
            Show("lstm", "final_ratio", "LSTM final/baseline"),
        ),
        note="at T = 10, the longest delay solved within 3000 steps here; T = 100-1000 not tested",
    ),
    # --- the Transformer family (issue 14) ----------------------------------------------------------------------
    Claim(
        "xiong.init",
        ("transformer_init_profile",),
        block_arm,
        Criterion(
            v.all_of(
                *(
                    v.all_of(
                        v.above(f"post d{d}", "proj_last_first", 1.0),
                        v.above(f"pre d{d}", "proj_last_first", 0.5),
                        v.below(f"pre d{d}", "proj_last_first", 2.0),
                    )
                    for d in (6, 12)
                )
            )
        ),
        tuple(
            Show(f"{p} d{d}", "proj_last_first", f"{p}-LN d{d}: ‖∇W²‖ last/first block")
            for p in ("post", "pre")
            for d in (6, 12)
        ),
        note="step 0, Xavier init, adding T = 50 (the default task); the step-0 gradient involves no optimizer",
        test="tests/test_transformer.py (experiment 1's direction)",
    ),
    Claim(
        "xiong.init_relative",
        ("transformer_init_profile",),
        block_arm,
        Criterion(
            v.all_of(
                *(
                    v.greater(v.value(f"post d{d}", "proj_last_first"), v.value(f"pre d{d}", "proj_last_first"))
                    for d in (6, 12)
                )
            )
        ),
        tuple(Show(f"{p} d12", "proj_last_first", f"{p}-LN d12: last/first") for p in ("post", "pre")),
    ),
    Claim(
        "xiong.warmup",
        ("transformer_warmup",),
        warmup_arm,
        Criterion(
            v.all_of(
                v.any_of(v.diverges("post none"), v.not_(v.beats("post none"))),
                v.beats("post warmup"),
                v.beats("pre none"),
            )
        ),
        (
            Show("post none", "final_ratio", "Post-LN, no warm-up: final/baseline"),
            Show("post warmup", "final_ratio", "Post-LN, warm-up"),
            Show("pre none", "final_ratio", "Pre-LN, no warm-up"),
            Show("pre warmup", "final_ratio", "Pre-LN, warm-up"),
        ),
        note="6 blocks, Adam 3e-3, temporal order T = 20, warm-up over 200 steps",
    ),
    Claim(
        "wortsman.qk_norm",
        ("transformer_lr_sweep",),
        qk_arm,
        Criterion(
            v.greater(
                v.sensitivity(f"qk=false lr={lr}" for lr in LR_SWEEP),
                v.sensitivity(f"qk=true lr={lr}" for lr in LR_SWEEP),
            )
        ),
        tuple(
            Show(f"qk={q} lr={lr}", "final", f"qk_norm={q} lr {lr}: final val loss")
            for q in ("false", "true")
            for lr in ("0.1", "1")
        ),
        derived=tuple(
            (f"LR sensitivity, qk_norm={q}", v.sensitivity(f"qk={q} lr={lr}" for lr in LR_SWEEP))
            for q in ("false", "true")
        ),
        note="associative recall K = 8, Adam with 200 warm-up steps; LR sensitivity = mean over the 5 lrs of "
        "min(final loss, loss at step 0) minus the best final loss",
    ),
    Claim(
        "wortsman.logits",
        ("transformer_lr_sweep",),
        qk_arm,
        Criterion(
            v.all_of(
                v.not_(v.beats("qk=false lr=0.1")),
                v.less("qk=true lr=0.1", "qk=false lr=0.1", "attn_logit_max", 0.1),
            )
        ),
        (
            Show("qk=false lr=0.1", "attn_logit_max", "lr 0.1, no qk_norm: largest attention logit"),
            Show("qk=true lr=0.1", "attn_logit_max", "with qk_norm"),
            Show("qk=false lr=0.1", "final_ratio", "no qk_norm: final/baseline"),
        ),
    ),
    Claim(
        "fp16.overflow",
        ("transformer_fp16",),
        precision_arm,
        Criterion(
            v.all_of(
                v.any_of(v.below("16-mixed", "amp_min_scale", 65536.0), v.above("16-mixed", "amp_skipped", 0.0)),
                v.below("bf16-mixed", "scaler", 0.5),
                v.below("bf16-mixed", "amp_skipped", 0.5),
                *(v.less(p, "32-true", "final", 1.1) for p in ("16-mixed", "bf16-mixed")),
            )
        ),
        (
            Show("16-mixed", "amp_min_scale", "16-mixed: smallest loss scale"),
            Show("16-mixed", "amp_skipped", "16-mixed: skipped steps"),
            Show("bf16-mixed", "final", "bf16 final val loss"),
            Show("32-true", "final", "32-true"),
        ),
        note="on a CPU, 16-mixed is fp16 autocast with a CPU GradScaler (src/build.py)",
    ),
    Claim(
        "pascanu.temporal_order",
        fixed=Verdict.not_testable,
        note="needs up to 5M updates per run and 5 seeds per length (hours per run on this CPU)",
    ),
    Claim("le.irnn", fixed=Verdict.not_testable, note="needs > 1M iterations per run at T = 300 (days on this CPU)"),
    Claim(
        "bai.gru",
        fixed=Verdict.not_testable,
        note="needs T = 600 trained to convergence; the GRU and LSTM at T = 100 are in experiment=gated_adding",
    ),
    Claim("bai.copy", fixed=Verdict.not_testable, note="needs T = 1000 trained to convergence"),
]
BY_KEY = {c.key: c for c in CLAIMS}


@dataclass
class Row:
    """One line of the claims table: the claim, what it read, its outcome and the numbers shown."""

    claim: Claim
    published: pub.Published
    outcome: Outcome | None
    verdict: Verdict
    numbers: list[tuple[Show, Spread]] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)


def claim_results(claim: Claim, root: Path, sweeps: dict[str, list[Run]] | None = None) -> list[Result]:
    """The claim's runs (``sweeps`` caches each experiment's, read once for every claim) as Results."""
    if claim.compute is not None:
        return claim.compute()
    sweeps = {} if sweeps is None else sweeps
    for name in claim.experiments:
        if name not in sweeps:
            sweeps[name] = collect([root / name])
    runs = [run for name in claim.experiments for run in sweeps[name]]
    assert claim.arm is not None
    return res.results(runs, claim.arm)


def evaluate_claim(claim: Claim, root: Path, sweeps: dict[str, list[Run]] | None = None) -> Row:
    published = pub.CLAIMS[claim.key]
    if claim.fixed is not None:
        return Row(claim, published, None, claim.fixed)
    assert claim.criterion is not None
    results = claim_results(claim, root, sweeps)
    outcome = v.evaluate(claim.criterion, results)
    numbers = [(s, v.spread(results, s.arm, s.key)) for s in claim.show]
    per_seed = v.by_seed(results).values()
    numbers += [(Show("", "", label), Spread.of(q(arms) for arms in per_seed)) for label, q in claim.derived]
    return Row(claim, published, outcome, outcome.verdict, numbers, results)


def evaluate_claims(root: Path) -> list[Row]:
    sweeps: dict[str, list[Run]] = {}
    return [evaluate_claim(claim, root, sweeps) for claim in CLAIMS]
