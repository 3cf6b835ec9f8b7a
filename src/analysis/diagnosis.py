"""Which of the seed article's exploding-gradient symptoms does a finished run show, and what caused them?

Symptoms (the seed's "Diagnosing Exploding Gradients"): a NaN/inf loss; weight norms growing monotonically;
the gradient norm growing across training instead of settling; spikes far above the typical norm. Read from
summary.json, csv/metrics.csv and the guard's flight recorder divergence.json. Causes, because the fix follows
the cause: ``init`` (non-finite at step 0, before any update: clipping cannot help; change the initialisation
or architecture), ``spike`` (healthy until one step's gradient or loss spiked, a bad batch: skip such steps),
``updates`` (finite at first, non-finite after some updates: clip, or lower the learning rate if clipped).

The suggested clip is the 90th percentile of the finite pre-clip norms logged before any divergence, spikes
left out (only the first half when the norm was growing: the rest is the explosion), so typical steps pass and
the largest tenth is rescaled; Pascanu, Mikolov & Bengio (2013, §3.2) found half to ten times the average norm
to converge, printed beside it. Fewer than ``MIN_NORMS`` samples give no suggestion.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from src.analysis.formatting import clip_label
from src.analysis.runs import load_run

MIN_NORMS = 10  # fewer finite pre-divergence norms than this are no distribution to take a percentile of
CLIP_PERCENTILE = 90


@dataclass
class Verdict:
    run_dir: str
    status: str
    symptoms: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    suggested_clip: float | None = None
    clip_rationale: str = ""
    cause: str | None = None  # init | spike | updates, or None for a run without a problem
    advice: str = ""

    @property
    def exploding(self) -> bool:
        return bool(self.symptoms)

    def add(self, symptom: str, evidence: str) -> None:
        self.symptoms.append(symptom)
        self.evidence.append(evidence)


def _chunks(values: list[float], n: int) -> list[list[float]]:
    size = max(1, len(values) // n)
    return [values[i * size : (i + 1) * size] for i in range(n) if values[i * size : (i + 1) * size]]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def _nonfinite_evidence(divergence: dict[str, Any] | None, record: dict[str, Any] | None, step: int) -> str:
    if divergence is None:
        return f"train/loss non-finite at logged step {step}"
    parts = [f"{divergence['reason']} at step {step}"]
    if divergence.get("loss_nonfinite"):
        parts.append("the loss itself was non-finite (the forward pass overflowed; every gradient follows)")
    elif divergence.get("first_nonfinite_layer"):
        parts.append(f"first layer with a non-finite gradient (network order): {divergence['first_nonfinite_layer']}")
    measured = divergence.get("layers_measured_at_step")
    if divergence.get("spike_layer"):
        parts.append(
            f"layer that grew most against its recent median: {divergence['spike_layer']} "
            f"(x{divergence['spike_ratio_vs_median']:.3g} at step {measured})"
        )
    elif divergence.get("largest_grad_layer"):
        parts.append(f"largest layer gradient at step {measured}: {divergence['largest_grad_layer']}")
    if record:
        history = record.get("history", {})
        lead = [(s, g) for s, g in zip(history.get("step", []), history.get("grad_norm", []), strict=False) if s < step]
        if lead:
            parts.append(
                "total norm over the last recorded steps: " + ", ".join(f"{g:.3g} (step {s})" for s, g in lead[-5:])
            )
    parts.append(f"clipping: {clip_label(divergence.get('clip'), None, divergence.get('clip_algorithm', 'norm'))}")
    return "; ".join(parts)


def diagnose(run_dir: Path) -> Verdict:
    run = load_run(run_dir)
    if run is None:
        raise FileNotFoundError(f"{run_dir} has no summary.json")
    summary: dict[str, Any] = run.summary
    metrics = run.series
    verdict = Verdict(str(run_dir), summary.get("status", "unknown"))
    record_path = Path(run_dir) / "divergence.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else None

    # 1. NaN / inf loss (or gradient), from the guard's record and the logged losses
    divergence = summary.get("divergence") or (record and {k: v for k, v in record.items() if k != "history"})
    bad_losses = [(s, v) for s, v in metrics.get("train/loss", []) if not math.isfinite(v)]
    end = math.inf  # the first step of the divergence: later numbers describe the wreck, not the run
    if divergence or bad_losses:
        end = divergence["step"] if divergence else bad_losses[0][0]
        verdict.add("loss or gradient went NaN/inf", _nonfinite_evidence(divergence, record, int(end)))

    # 2. weight norms growing monotonically
    for key, points in metrics.items():
        if not key.startswith("weight/layer/"):
            continue
        values = [v for s, v in points if s < end and math.isfinite(v)]
        if len(values) < 4:
            continue
        rises = sum(b > a for a, b in itertools.pairwise(values)) / (len(values) - 1)
        if rises >= 0.9 and values[-1] > 2 * values[0]:
            verdict.add(
                "weight norms growing monotonically",
                f"{key.removeprefix('weight/layer/')}: {values[0]:.3g} -> {values[-1]:.3g}, rose on "
                f"{100 * rises:.0f}% of {len(values)} logged steps",
            )
            break

    # 3. gradient norm growing across training instead of stabilising
    logged = [(s, v) for s, v in metrics.get("grad/norm_total_preclip", []) if s < end and math.isfinite(v)]
    norms = [v for _, v in logged]
    parts = _chunks(norms, 4)
    growing = False
    if len(parts) == 4:
        medians = [median(p) for p in parts]
        growing = all(b > a for a, b in itertools.pairwise(medians)) and medians[-1] > 10 * medians[0]
        if growing:
            verdict.add(
                "gradient norm growing across training",
                "median pre-clip norm per quarter of training: " + ", ".join(f"{m:.3g}" for m in medians),
            )

    # 3b. the seed's yardstick: "if gradient norm grows from ~1 to ~1000 ... exploding gradients are the cause"
    if norms and median(norms) > 1e3:
        verdict.add("gradient norm far above ~1000", f"median logged pre-clip norm {median(norms):.3g}")

    # 4. spikes: the guard's spike events, or the largest norm between logs far above the typical logged norm
    spikes = [e for e in summary.get("guard_events", []) if e.get("kind") == "spike"]
    maxima = [v for s, v in metrics.get("grad/norm_max_since_log", []) if s < end and math.isfinite(v)]
    if spikes:
        steps = ", ".join(str(e["step"]) for e in spikes[:5])
        verdict.add(
            "gradient norm spikes",
            f"the guard flagged {len(spikes)} spike(s) at steps {steps}{'...' if len(spikes) > 5 else ''} "
            f"(action: {spikes[0]['action']})",
        )
    elif norms and maxima and median(norms) > 0 and max(maxima) > 10 * median(norms):
        verdict.add(
            "gradient norm spikes", f"largest step norm {max(maxima):.3g} vs median logged norm {median(norms):.3g}"
        )

    name_cause(verdict, divergence, end, spikes, growing)
    if verdict.cause != "init":  # at initialisation there is no healthy norm to take a threshold from
        suggest_clip(verdict, logged, record, end, spikes, growing)
    else:
        verdict.clip_rationale = "none: the run overflowed before any update, so no threshold would have helped"
    return verdict


SPIKE_LEAD_STEPS = 3  # a NaN this soon after a spike is that spike's consequence


def name_cause(
    verdict: Verdict, divergence: dict[str, Any] | None, end: float, spikes: list[dict[str, Any]], growing: bool
) -> None:
    """Which of the three causes in the module docstring the evidence points to, and what to do about it."""
    spike_steps = sorted(int(e["step"]) for e in spikes)
    before = [s for s in spike_steps if s < end]
    if math.isfinite(end) and end == 0:
        what = "loss" if divergence is None or divergence.get("loss_nonfinite") else "gradient"
        verdict.cause = "init"
        verdict.advice = (
            f"the {what} was non-finite at step 0, before any update: the initial weights overflow the "
            f"{'forward' if what == 'loss' else 'backward'} pass. Clipping and the learning rate act only after "
            "it, so neither can help; change the initialisation or the architecture (model.init=he or xavier "
            "instead of N(0, 1), fewer layers, model.norm=layernorm)"
        )
    elif before and end - before[-1] <= SPIKE_LEAD_STEPS and not growing:
        verdict.cause = "spike"
        verdict.advice = (
            f"healthy until a spike at step {before[-1]}, non-finite at step {int(end)}: a transient spike (a bad "
            "batch?) broke the run; skip such steps (callbacks.divergence_guard.on_spike=skip) or clip them"
        )
    elif math.isfinite(end):
        clip = (divergence or {}).get("clip")
        verdict.cause = "updates"
        verdict.advice = f"finite at first, non-finite at step {int(end)}: the updates grew too large; " + (
            "clip the gradients (suggested clip below) or lower the learning rate"
            if clip is None
            else f"the gradients were already clipped at {clip}: lower the learning rate"
        )
    elif spike_steps:
        acted = {e.get("action") for e in spikes}
        verdict.cause = "spike"
        verdict.advice = f"{len(spike_steps)} transient spike(s) the run survived" + (
            "; they were skipped (on_spike=skip)"
            if acted == {"skip"}
            else "; to keep them out of the weights, skip them (callbacks.divergence_guard.on_spike=skip)"
        )


def suggest_clip(
    verdict: Verdict,
    logged: list[tuple[int, float]],
    record: dict[str, Any] | None,
    end: float,
    spikes: list[dict[str, Any]],
    growing: bool,
) -> None:
    """The CLIP_PERCENTILE-th percentile of the healthy pre-clip norms (see the module docstring)."""
    spiked = {e["step"] for e in spikes}
    sample = [(s, v) for s, v in logged if s < end and s not in spiked]
    source = "logged"
    if len(sample) < MIN_NORMS and record:  # a short run: the flight recorder has every step, not every n-th
        history = record.get("history", {})
        steps, totals = history.get("step", []), history.get("grad_norm", [])
        sample = [(s, v) for s, v in zip(steps, totals, strict=False) if s < end and s not in spiked]
        sample = [(s, v) for s, v in sample if math.isfinite(v)]
        source = "recorded"
    if growing:
        sample = sample[: max(1, len(sample) // 2)]
    values = [v for _, v in sample]
    if len(values) < MIN_NORMS:
        verdict.clip_rationale = (
            f"no suggestion: {len(values)} finite pre-clip norms before the run diverged (spikes left out), fewer than "
            f"{MIN_NORMS}; take a healthy run's norms (e.g. the same run with clip=1.0) and try again"
        )
        return
    mean = sum(values) / len(values)
    verdict.suggested_clip = _percentile(values, CLIP_PERCENTILE)
    scope = "the first half of" if growing else "all"
    verdict.clip_rationale = (
        f"{CLIP_PERCENTILE}th percentile of {scope} {len(values)} {source} finite pre-clip norms before any "
        f"divergence, spikes left out (steps {sample[0][0]}..{sample[-1][0]}): typical steps pass, the largest "
        f"tenth is rescaled; Pascanu et al. 2013 §3.2 found half to ten times the average norm ({mean:.3g}), i.e. "
        f"{0.5 * mean:.3g} to {10 * mean:.3g}, to converge"
    )


def report(verdict: Verdict) -> str:
    lines = [f"run: {verdict.run_dir}", f"status: {verdict.status}"]
    if verdict.symptoms:
        lines.append("symptoms of exploding gradients:")
        lines += [f"  - {s}: {e}" for s, e in zip(verdict.symptoms, verdict.evidence, strict=True)]
    else:
        lines.append("no symptom of exploding gradients (finite loss, weights and gradient norms settled)")
    if verdict.cause is not None:
        lines.append(f"likely cause ({verdict.cause}): {verdict.advice}")
    if verdict.suggested_clip is not None:
        lines.append(f"suggested clip: {verdict.suggested_clip:.3g} ({verdict.clip_rationale})")
    else:
        lines.append(f"suggested clip: {verdict.clip_rationale}")
    return "\n".join(lines)
