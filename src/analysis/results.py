"""A finished run reduced to a ``verdicts.Result``: the numbers the claims' criteria read, computed once per run.

Every criterion of src/analysis/claims.py reads the same names, so a number means the same thing in every claim:
- final, best, steps_to_solve, final_ratio, best_ratio: the validation loss (src/analysis/criteria.py).
- max_grad_norm: the largest pre-clip total norm of any step (inf once a step overflowed); max_finite_grad_norm
  the largest finite one logged (a diverged run's climb before its last steps); mean_grad_norm,
  median_grad_norm and grad_norm_cv (std/mean) over the logged steps after ``WARMUP`` (the first steps of
  a fresh init are not the training regime whose noise the batch size sets).
- clipped_fraction and steps_clipped: how often the clip acted.
- grad_first/grad_head/grad_ratio: the first layer's and the head's gradient norm at step 0, and their ratio.
- delta_1, grad_1, update_1: the first layer's δ_1 = ‖∂L/∂a_1‖, ∂L/∂W_1 and |ΔW_1| at step 0 (the chain's
  worked example); delta/<l> and grad/<l> for every layer l = 1..n in network order.
- grad_growth: max_finite_grad_norm over the step-0 total norm (an explosion during training, not at init).
- rise_steps: steps from the last logged norm below 10x the step-0 norm to the first above 1000x (how gradual
  an explosion is); weight_monotone (1/0): the total weight norm never fell between logged steps;
  weight_growth: the last logged total weight norm over the first.
- acc, exact_match: final validation accuracy on the answer positions and exact sequence match.
- time_ratio: median over logged steps after 0 of ‖dL/dh_0‖/‖dL/dh_(T−1)‖ (recurrent models).
- proj_last_first: a Transformer's step-0 gradient norm of the last block's second feed-forward matrix over the
  first block's (Xiong et al.'s W^(2,l)); attn_logit_max: the largest attention logit logged at any step and
  layer (inf once one was non-finite).
- scaler (1/0): a GradScaler's scale was logged (16-mixed); amp_min_scale its smallest value; amp_skipped the
  optimizer steps it skipped (0 without a scaler).
- train_initial and train_final: the first and the last logged training loss; divergence_step; steps
  (optimizer steps run) and steps_after_divergence.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Callable

from src.analysis.runs import Run
from src.analysis.verdicts import Result

WARMUP = 100  # optimizer steps left out of the norm statistics


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def largest_finite_norm(run: Run) -> float | None:
    """The largest finite pre-clip norm: the windows' maxima and the flight recorder's last finite norm."""
    finite = _finite([v for _, v in run.curve("grad/norm_max_since_log")])
    last = (run.summary.get("divergence") or {}).get("last_finite_grad_norm")
    return max([*finite, *([last] if last is not None else [])], default=None)


def norm_stats(run: Run) -> dict[str, float | None]:
    norms = _finite([v for s, v in run.curve("grad/norm_total_preclip") if s >= WARMUP])
    if len(norms) < 2:
        return {"mean_grad_norm": None, "median_grad_norm": None, "grad_norm_cv": None}
    mean = statistics.fmean(norms)
    return {
        "mean_grad_norm": mean,
        "median_grad_norm": statistics.median(norms),
        "grad_norm_cv": statistics.pstdev(norms) / mean if mean > 0 else None,
    }


def _first(values: dict[str, float]) -> float | None:
    return next(iter(values.values()), None)


def _last(values: dict[str, float]) -> float | None:
    return next(reversed(values.values()), None) if values else None


def in_network_order(run: Run, values: dict[str, float]) -> list[float]:
    """Per-layer values in the network's order (summary.json's layer_order), else in natural name order."""
    order = run.summary.get("layer_order") or []
    ranked = [values[name] for name in order if name in values]
    return ranked if len(ranked) == len(values) else list(values.values())


def step0_profile(run: Run) -> dict[str, float | None]:
    grads = in_network_order(run, run.at_step("grad/layer/", 0))
    deltas = in_network_order(run, run.at_step("delta/layer/", 0))
    first, head = (grads[0], grads[-1]) if grads else (None, None)
    ratio = first / head if first is not None and head and math.isfinite(first) else None
    update_ratio, weight = _first(run.at_step("update_ratio/layer/", 0)), _first(run.at_step("weight/layer/", 0))
    update = update_ratio * weight if update_ratio is not None and weight is not None else None
    out: dict[str, float | None] = {
        "grad_first": first,
        "grad_head": head,
        "grad_ratio": ratio,
        "delta_1": deltas[0] if deltas else None,
        "grad_1": first,
        "update_1": update,
    }
    out.update({f"delta/{i}": d for i, d in enumerate(deltas, 1)})
    out.update({f"grad/{i}": g for i, g in enumerate(grads, 1)})
    return out


def growth(run: Run) -> dict[str, float | None]:
    """How the gradient and the weights grew during training (the seed's symptoms 2 and 3)."""
    norms = [(s, x) for s, x in run.curve("grad/norm_max_since_log") if not math.isnan(x)]
    start = norms[0][1] if norms else None
    largest = largest_finite_norm(run)
    rise = None
    if start:
        high = next((s for s, x in norms if x > 1000 * start), None)
        if high is not None:
            low = max((s for s, x in norms if s < high and x <= 10 * start), default=None)
            rise = float(high - low) if low is not None else None
    totals: dict[int, float] = {}
    for key, points in run.series.items():
        if key.startswith("weight/layer/"):
            for s, x in points:
                totals[s] = totals.get(s, 0.0) + x * x
    weights = [math.sqrt(t) for _, t in sorted(totals.items()) if math.isfinite(t)]
    monotone = float(all(b >= a for a, b in itertools.pairwise(weights))) if len(weights) > 1 else None
    return {
        "grad_growth": largest / start if largest is not None and start else None,
        "rise_steps": rise,
        "weight_monotone": monotone,
        "weight_growth": weights[-1] / weights[0] if len(weights) > 1 and weights[0] else None,
    }


_PROJ = re.compile(r"blocks\.(\d+)\.mlp\.proj$")


def transformer_values(run: Run) -> dict[str, float | None]:
    """The Transformer experiments' numbers: the step-0 W^(2,l) profile's ends, attention logits, loss scaling."""
    proj = sorted(
        (int(m.group(1)), g) for name, g in run.at_step("grad/layer/", 0).items() if (m := _PROJ.search(name))
    )
    logits = [x for key, points in run.series.items() if key.startswith("attn/logit_max/") for _, x in points]
    scale = [x for _, x in run.curve("amp/scale")]
    skipped = [x for _, x in run.curve("amp/skipped_steps")]
    return {
        "proj_last_first": proj[-1][1] / proj[0][1] if len(proj) > 1 and proj[0][1] else None,
        "attn_logit_max": (max(logits) if all(map(math.isfinite, logits)) else math.inf) if logits else None,
        "scaler": float(bool(scale)),
        "amp_min_scale": min(scale) if scale else None,
        "amp_skipped": max(skipped) if skipped else 0.0,
    }


def time_ratio(run: Run) -> float | None:
    ratios = _finite([v for s, v in run.curve("time_grad/ratio_first_last") if s > 0])
    return statistics.median(ratios) if ratios else None


def result(run: Run, arm: str) -> Result:
    """The run as one arm of a comparison."""
    summary = run.summary
    metrics = summary.get("metrics", {})
    steps = summary.get("optimizer_steps") or summary.get("steps") or 0
    clipped = summary.get("steps_clipped")
    train = [v for _, v in run.curve("train/loss")]
    values: dict[str, float | None] = {
        "max_grad_norm": summary.get("max_grad_norm"),
        "max_finite_grad_norm": largest_finite_norm(run),
        "clipped_fraction": clipped / steps if clipped is not None and steps else None,
        "steps_clipped": clipped,
        "acc": metrics.get("val/acc"),
        "exact_match": metrics.get("val/exact_match"),
        "time_ratio": time_ratio(run),
        "train_initial": train[0] if train else None,
        "train_final": train[-1] if train else None,
        "divergence_step": run.diverged_at,
        "steps": summary.get("steps"),
        "steps_after_divergence": (
            summary["steps"] - run.diverged_at if run.diverged_at is not None and summary.get("steps") else None
        ),
        **norm_stats(run),
        **step0_profile(run),
        **growth(run),
        **transformer_values(run),
    }
    final = run.final("val/loss")
    if run.status == "diverged":
        final = math.inf  # whatever its last weights score (NaN, or finite after skipped steps): it did not finish
    return Result(
        arm=arm,
        seed=int(summary.get("seed", 0)),
        status=run.status,
        final=final,
        best=run.best("val/loss"),
        baseline=run.baseline,
        steps_to_solve=summary.get("steps_to_solve"),
        values=values,
    )


def results(runs: list[Run], arm: Callable[[Run], str | None]) -> list[Result]:
    """Every run that ``arm`` labels (None: not part of this comparison)."""
    return [result(run, label) for run in runs if (label := arm(run)) is not None]
