"""The claims table's inputs: every claim tested or explained, every arm a criterion names produced by the
experiments' real sweeps, run files reduced to the numbers criteria read, verdicts both ways from made-up runs."""

from __future__ import annotations

import csv
import functools
import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from src.analysis import claims as cl
from src.analysis import published as pub
from src.analysis.claims_table import claims_table, counts_text
from src.analysis.formatting import fmt
from src.analysis.results import result
from src.analysis.runs import Run, load_run
from src.analysis.verdicts import Result, Verdict
from src.config import register
from src.config.preflight import _job_overrides
from src.reproduce import BY_NAME
from tests.conftest import compose_cfg


def test_every_published_claim_has_a_test_and_every_fixed_verdict_says_why() -> None:
    assert set(pub.CLAIMS) == set(cl.BY_KEY) and len(cl.CLAIMS) == len(cl.BY_KEY)
    for claim in cl.CLAIMS:
        tested = claim.criterion is not None and (claim.experiments or claim.compute is not None)
        assert tested != (claim.fixed is not None), claim.key
        assert claim.fixed is None or claim.note, f"{claim.key}: a fixed verdict needs its reason"
        assert all(name in BY_NAME for name in claim.experiments), claim.key


class Recorder(dict):
    """An arms mapping that records every arm name a criterion asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: Any, default: Any = None) -> Any:
        self.asked.add(key)
        return default


def arms_named(claim: cl.Claim) -> set[str]:
    recorder = Recorder()
    assert claim.criterion is not None
    claim.criterion.test(recorder)
    return recorder.asked | {show.arm for show in claim.show}


@functools.cache
def sweep_runs(experiment: str) -> tuple[list[Run], int]:
    """A Run per job of ``-m experiment=NAME`` but its seeds (composed, not trained: config, clip and choices),
    and the number of seeds the sweep runs (composing every seed's job too would triple the time)."""
    register()
    jobs = _job_overrides(["-m", f"experiment={experiment}"], "train")
    seeds = {o for job in jobs for o in job if o.startswith("seed=")}
    runs = []
    for overrides in {tuple(o for o in job if not o.startswith("seed=")) for job in jobs}:
        cfg = compose_cfg(Path("/tmp/unused"), list(overrides), fast=False)
        choices = {str(k): str(v) for k, v in cfg.hydra.runtime.choices.items() if v is not None}
        config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
        assert isinstance(config, dict)
        config.pop("hydra")
        runs.append(Run(Path("/tmp/unused"), {"config": config, "clip": cfg.clip, "choices": choices}))
    return runs, max(1, len(seeds))


@pytest.mark.parametrize("claim", [c for c in cl.CLAIMS if c.experiments], ids=lambda c: c.key)
def test_every_arm_a_criterion_names_is_a_job_of_its_experiments(claim: cl.Claim) -> None:
    assert claim.arm is not None and claim.criterion is not None
    seeds: dict[str, int] = {}  # arm label -> seeds the sweeps run it with
    for experiment in claim.experiments:
        runs, n_seeds = sweep_runs(experiment)
        for run in runs:
            label = claim.arm(run)
            if label is not None:
                seeds[label] = max(seeds.get(label, 0), n_seeds)
    missing = arms_named(claim) - set(seeds)
    assert not missing, f"{claim.key}: no job of {claim.experiments} is labelled {sorted(missing)}"
    assert all(seeds[a] >= claim.criterion.min_seeds for a in arms_named(claim)), f"{claim.key}: too few seeds"


def write_run(run_dir: Path, summary: dict[str, Any], rows: list[dict[str, float]]) -> Run:
    (run_dir / "csv").mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps(summary))
    keys = sorted({k for row in rows for k in row})
    with (run_dir / "csv" / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    run = load_run(run_dir)
    assert run is not None
    return run


BASE = 1 / 6


def adding_run(run_dir: Path, model: str, seed: int, curve: list[float], status: str = "completed") -> Run:
    """A made-up gated_adding job: its summary.json and the val/loss curve of its metrics.csv."""
    rows = [{"step": 100 * (i + 1) - 1, "val/loss": v} for i, v in enumerate(curve)]
    summary = {
        "status": status,
        "seed": seed,
        "clip": 1.0,
        "steps": 3000,
        "baseline": BASE,
        "choices": {"model": model, "experiment": "gated_adding"},
        "metrics": {"val/loss": curve[-1]},
        "steps_to_solve": next((r["step"] for r in rows if r["val/loss"] < 0.1 * BASE), None),
        "config": {"data": {"seq_len": 100}},
    }
    return write_run(run_dir, summary, rows)


def gated_adding(root: Path, lstm_final_seed2: float) -> None:
    sweep = root / "gated_adding"
    job = 0
    for seed in range(3):
        lstm = [0.16, 0.05, 0.004] if seed < 2 else [0.16, 0.05, lstm_final_seed2]
        for model, curve in (("lstm", lstm), ("rnn", [0.175, 0.178, 0.18])):
            adding_run(sweep / f"{job}_{model}-adding100-seed{seed}", model, seed, curve)
            job += 1


@pytest.mark.parametrize(("final", "verdict"), [(0.004, Verdict.supported), (0.02, Verdict.contradicted)])
def test_lstm_claim_from_made_up_runs_both_ways(tmp_path: Path, final: float, verdict: Verdict) -> None:
    # 0.02 is 0.12x the 1/6 baseline: seed 2's LSTM no longer solves T = 100, so "solves on every seed" fails
    gated_adding(tmp_path, final)
    row = cl.evaluate_claim(cl.BY_KEY["arjovsky.lstm"], tmp_path)
    assert row.verdict is verdict and row.outcome is not None and row.outcome.decided == 3
    assert cl.evaluate_claim(cl.BY_KEY["arjovsky.rnn"], tmp_path).verdict is Verdict.supported
    spread = next(sp for s, sp in row.numbers if (s.arm, s.key) == ("lstm", "final_ratio"))
    assert spread.n == 3 and math.isclose(spread.hi, max(final, 0.004) / BASE)


def test_a_run_reduced_to_what_criteria_read(tmp_path: Path) -> None:
    norms = [18.0, 9.0, 20.0, 2.8e8]  # step 0, 25, 50, 75: below 10x the step-0 norm until 50, > 1000x at 75
    rows = [{"step": 25 * i, "grad/norm_total_preclip": n, "grad/norm_max_since_log": n} for i, n in enumerate(norms)]
    rows += [{"step": 25 * i, "weight/layer/network.head": w} for i, w in enumerate([1.0, 1.5, 1.2, 9.0])]
    rows += [{"step": 0, "grad/layer/network.rnn": 30.0}, {"step": 0, "grad/layer/network.head": 3.0}]
    summary = {
        "status": "diverged",
        "seed": 4,
        "steps": 80,
        "baseline": BASE,
        "metrics": {"val/loss": 0.15},
        "divergence": {"step": 77, "last_finite_grad_norm": 5e8},
        "steps_clipped": 0,
        "optimizer_steps": 80,
        "layer_order": ["network.rnn", "network.head"],
        "max_grad_norm": math.inf,
    }
    r = result(write_run(tmp_path / "run", summary, rows), "T50 clip=none")
    assert r.seed == 4 and r.diverged and r.final == math.inf  # a diverged run does not end at a finite loss
    assert r.get("max_finite_grad_norm") == 5e8 and r.get("grad_growth") == 5e8 / 18.0
    assert r.get("rise_steps") == 25.0  # from step 50 (20 < 180) to step 75 (2.8e8 > 18000)
    assert r.get("weight_monotone") == 0.0 and r.get("weight_growth") == 9.0
    assert r.get("grad_ratio") == 10.0 and r.get("grad/1") == 30.0 and r.get("clipped_fraction") == 0.0
    assert r.get("steps_after_divergence") == 3.0
    assert r.get("grad_norm_cv") is None  # no logged step after the 100-step warm-up


def test_worked_examples_are_computed_with_torch_clipping() -> None:
    by = {r.arm: r for r in cl.clip_examples()}
    example = by["[16,12,-8] to 5"]
    assert math.isclose(example.get("g2"), 12 * 5 / math.sqrt(464), rel_tol=1e-6)  # 2.785430, not the seed's 2.786
    assert math.isclose(by["W1,W2 to 1"].get("w2"), 0.1 / math.hypot(100.0, 0.1), rel_tol=1e-6)
    for key in ("clip.example", "q2", "q4"):
        assert cl.evaluate_claim(cl.BY_KEY[key], Path("/nonexistent")).verdict is Verdict.supported


def test_a_claim_with_runs_missing_is_not_run(tmp_path: Path) -> None:
    row = cl.evaluate_claim(cl.BY_KEY["pascanu.threshold"], tmp_path)
    assert row.verdict is Verdict.not_run and all(spread.n == 0 for _, spread in row.numbers)


def test_results_keep_what_the_report_shows() -> None:
    r = Result("a", 0, final=0.01, baseline=BASE, values={"acc": 0.9})
    assert math.isclose(r.get("final_ratio"), 0.06) and r.get("acc") == 0.9 and r.get("nothing") is None


def test_transformer_numbers_from_made_up_runs(tmp_path: Path) -> None:
    rows: list[dict[str, float]] = [
        {"step": 0, **{f"grad/layer/network.blocks.{i}.mlp.proj": g for i, g in enumerate([2.0, 1.0, 0.5])}},
        {"step": 0, "grad/layer/network.blocks.10.mlp.proj": 0.25},  # natural order: block 10 is the last
        {"step": 0, "attn/logit_max/network.blocks.0.attn": 3.0, "amp/scale": 65536.0, "amp/skipped_steps": 0},
        {"step": 99, "attn/logit_max/network.blocks.0.attn": 8.8e4, "amp/scale": 32768.0, "amp/skipped_steps": 1},
    ]
    summary = {"status": "completed", "seed": 1, "baseline": 1.649, "metrics": {"val/loss": 0.1}}
    r = result(write_run(tmp_path / "fp16", summary, rows), "16-mixed")
    assert r.get("proj_last_first") == 0.125 and r.get("attn_logit_max") == 8.8e4
    assert r.get("scaler") == 1.0 and r.get("amp_min_scale") == 32768.0 and r.get("amp_skipped") == 1.0
    rows = [{"step": 0, "attn/logit_max/network.blocks.0.attn": 2.0}, {"step": 9, "attn/logit_max/x": math.inf}]
    bf16 = result(write_run(tmp_path / "bf16", summary, rows), "bf16-mixed")
    assert bf16.get("attn_logit_max") == math.inf and bf16.get("scaler") == 0.0 and bf16.get("amp_skipped") == 0.0
    assert bf16.get("amp_min_scale") is None and bf16.get("proj_last_first") is None


def warmup_runs(root: Path, post_none_final: float) -> None:
    """Made-up transformer_warmup jobs: temporal order, baseline ln 4."""
    job = 0
    for seed in range(3):
        for arm, final in (("post none", post_none_final), ("post warmup", 5e-5), ("pre none", 6e-5)):
            norm, scheduler = arm.split()
            summary = {"status": "completed", "seed": seed, "baseline": math.log(4), "metrics": {"val/loss": final},
                       "choices": {"scheduler": scheduler}, "config": {"model": {"norm_position": norm}}}  # fmt: skip
            write_run(root / "transformer_warmup" / f"{job}_{arm}", summary, [{"step": 499, "val/loss": final}])
            job += 1


@pytest.mark.parametrize(("post_none", "verdict"), [(1.385, Verdict.supported), (0.3, Verdict.contradicted)])
def test_warmup_claim_and_its_table_row_both_ways(tmp_path: Path, post_none: float, verdict: Verdict) -> None:
    warmup_runs(tmp_path, post_none)  # 0.3 is 0.22x ln 4: Post-LN trained without warm-up
    rows = cl.evaluate_claims(tmp_path)
    row = next(r for r in rows if r.claim.key == "xiong.warmup")
    assert row.verdict is verdict and row.outcome is not None and row.outcome.decided == 3
    lines = "\n".join(claims_table(rows)).splitlines()
    table = [line for line in lines if line.startswith("| ") and "`" in line]
    assert len(table) == len(cl.CLAIMS) and all(len(re.findall(r"(?<!\\)\|", line)) == 7 for line in table)
    table_row = next(line for line in lines if "`xiong.warmup`" in line and line.startswith("|"))
    assert f"**{verdict.value}** ({3 if verdict is Verdict.supported else 0}/3 seeds)" in table_row
    assert f"{fmt(post_none / math.log(4), 3)} (" in table_row  # the median over 3 equal seeds, then the range
    tally = Counter(r.verdict for r in rows)
    assert lines[2] == counts_text(rows) and f"{tally[Verdict.not_run]} not run" in lines[2]
    criterion = next(line for line in lines if line.startswith(f"{rows.index(row) + 1}. `xiong.warmup`"))
    assert criterion.endswith(", ".join(f"seed {s} {'holds' if verdict is Verdict.supported else 'fails'}"
                                        for s in range(3)) + ".")  # fmt: skip
