"""Read a finished run's files and name the seed article's symptoms of exploding gradients, with evidence.

Symptoms ("Diagnosing Exploding Gradients" in the seed article):
1. the loss went NaN or ∞;
2. weight norms grow monotonically instead of settling;
3. the gradient norm grows across training instead of stabilising (the seed: ~1 to ~1000 over 10 epochs);
4. spikes: single steps far above the typical gradient norm.
Plus a suggested clipping threshold from the observed pre-divergence norms: the 90th percentile, so that
typical steps pass untouched and only the largest tenth is rescaled — inside the range Pascanu, Mikolov &
Bengio (2013, §3.2) found to still converge (half to ten times the average norm), which is shown beside it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from src.reproduce.runs import load_run


@dataclass
class Verdict:
    run_dir: str
    status: str
    symptoms: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    suggested_clip: float | None = None
    clip_rationale: str = ""

    @property
    def exploding(self) -> bool:
        return bool(self.symptoms)


def _chunks(values: list[float], n: int) -> list[list[float]]:
    size = max(1, len(values) // n)
    return [values[i * size : (i + 1) * size] for i in range(n) if values[i * size : (i + 1) * size]]


def diagnose(run_dir: Path) -> Verdict:
    run = load_run(run_dir)
    if run is None:
        raise FileNotFoundError(f"{run_dir} has no summary.json")
    summary: dict[str, Any] = run.summary
    metrics = run.series
    verdict = Verdict(str(run_dir), summary.get("status", "unknown"))

    # 1. NaN / inf loss (or gradient), from the guard's record and the logged losses
    divergence = summary.get("divergence")
    bad_losses = [(s, v) for s, v in metrics.get("train/loss", []) if not math.isfinite(v)]
    if divergence or bad_losses:
        step = divergence["step"] if divergence else bad_losses[0][0]
        reason = divergence["reason"] if divergence else "train/loss non-finite"
        layer = (divergence or {}).get("first_nonfinite_layer") or (divergence or {}).get("spike_layer")
        verdict.symptoms.append("loss or gradient went NaN/inf")
        verdict.evidence.append(f"{reason} at step {step}" + (f"; first layer affected: {layer}" if layer else ""))

    # 2. weight norms growing monotonically
    for key, points in metrics.items():
        if not key.startswith("weight/layer/") or len(points) < 4:
            continue
        values = [v for _, v in points if math.isfinite(v)]
        if len(values) < 4:
            continue
        rises = sum(b > a for a, b in itertools.pairwise(values)) / (len(values) - 1)
        if rises >= 0.9 and values[-1] > 2 * values[0]:
            verdict.symptoms.append("weight norms growing monotonically")
            verdict.evidence.append(
                f"{key.removeprefix('weight/layer/')}: {values[0]:.3g} -> {values[-1]:.3g}, rose on "
                f"{100 * rises:.0f}% of {len(values)} logged steps"
            )
            break

    # 3. gradient norm growing across training instead of stabilising
    norms = [v for _, v in metrics.get("grad/norm_total_preclip", []) if math.isfinite(v)]
    parts = _chunks(norms, 4)
    if len(parts) == 4:
        medians = [median(p) for p in parts]
        if all(b > a for a, b in itertools.pairwise(medians)) and medians[-1] > 10 * medians[0]:
            verdict.symptoms.append("gradient norm growing across training")
            verdict.evidence.append(
                "median pre-clip norm per quarter of training: " + ", ".join(f"{m:.3g}" for m in medians)
            )

    # 3b. the seed's yardstick: "if gradient norm grows from ~1 to ~1000 ... exploding gradients are the cause"
    if norms and median(norms) > 1e3:
        verdict.symptoms.append("gradient norm far above ~1000")
        verdict.evidence.append(f"median logged pre-clip norm {median(norms):.3g} (max {max(norms):.3g})")

    # 4. spikes: the largest norm between logs far above the typical logged norm
    maxima = [v for _, v in metrics.get("grad/norm_max_since_log", []) if math.isfinite(v)]
    if norms and maxima and median(norms) > 0 and max(maxima) > 10 * median(norms):
        verdict.symptoms.append("gradient norm spikes")
        verdict.evidence.append(f"largest step norm {max(maxima):.3g} vs median logged norm {median(norms):.3g}")

    if norms:
        ordered = sorted(norms)
        p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        mean = sum(norms) / len(norms)
        verdict.suggested_clip = p90
        verdict.clip_rationale = (
            f"90th percentile of {len(norms)} finite pre-clip norms before any divergence: typical steps pass, "
            f"the largest tenth is rescaled (Pascanu et al. 2013: half to ten times the average "
            f"{mean:.3g}, i.e. {0.5 * mean:.3g} to {10 * mean:.3g}, still converges)"
        )
    return verdict


def report(verdict: Verdict) -> str:
    lines = [f"run: {verdict.run_dir}", f"status: {verdict.status}"]
    if verdict.symptoms:
        lines.append("symptoms of exploding gradients:")
        lines += [f"  - {s}: {e}" for s, e in zip(verdict.symptoms, verdict.evidence, strict=True)]
    else:
        lines.append("no symptom of exploding gradients (finite loss, weights and gradient norms settled)")
    if verdict.suggested_clip is not None:
        lines.append(f"suggested clip: {verdict.suggested_clip:.3g} ({verdict.clip_rationale})")
    return "\n".join(lines)
