"""docs/results.md and docs/img/*.png from the runs of a reproduction (summary.json + csv/metrics.csv).

Every number in the report is read from the run files; the published numbers beside them come from
src/analysis/published.py, each with its source. "Beats" and "solves" are src/analysis/criteria.py's.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from src.analysis import claims as cl
from src.analysis import criteria
from src.analysis import published as pub
from src.analysis.claims_table import claims_table
from src.analysis.compare import compare
from src.analysis.formatting import fmt, markdown_table
from src.analysis.plots import layer_profiles, loss_curves, series_plot, sweep_plot
from src.analysis.results import largest_finite_norm
from src.analysis.runs import Run, collect
from src.environment import cpu_name
from src.reproduce import EXPERIMENTS

Section = Callable[[list[Run], Path], list[str]]


def status_text(run: Run) -> str:
    if run.status == "diverged":
        reason = (run.summary.get("divergence") or {}).get("reason", "")
        return f"**diverged** at step {run.diverged_at}" + (f" ({reason})" if reason else "")
    return run.status


def image(alt: str, path: Path, docs: Path, caption: str) -> str:
    """A figure and, below it, its caption: what to look at in it."""
    return f"![{alt}]({os.path.relpath(path, docs)})\n\n*Figure: {caption}*"


def first(run: Run, prefix: str, step: int = 0) -> float | None:
    """The input-side layer's ``prefix*`` value at ``step``."""
    return next(iter(run.at_step(prefix, step).values()), None)


def chain_section(runs: list[Run], docs: Path) -> list[str]:
    out = [
        "Scalar chain `a_l = w·a_(l-1)`, x = 1, loss = output (so δ at the output is 1), plain SGD lr 0.1, "
        "no clipping (`model=chain data=scalar`). δ_l = ‖∂L/∂a_l‖ is ActivationMonitor's `delta/layer/*`, "
        "the weight gradients GradNormMonitor's `grad/layer/*`, the update WeightMonitor's `update_ratio/layer/*` "
        "× `weight/layer/*` — the ordinary run path, not a separate toy.",
        "",
    ]
    by = {(r.cfg("model.init_value"), r.cfg("model.depth")): r for r in runs}
    rows, mismatched = [], set()
    for w in [w for w in (0.5, 1.0, 2.0) if (w, 5) in by]:
        deltas = list(by[(w, 5)].at_step("delta/layer/", 0).values())
        grads = list(by[(w, 5)].at_step("grad/layer/", 0).values())
        n = len(deltas)
        for i, (d, g) in enumerate(zip(deltas, grads, strict=True)):
            exact, printed = w ** (n - i - 1), pub.SEED_LISTING_PRINTED[w][i]
            text = pub.SEED_DELTA_TEXT.get(w, [None] * n)[i]
            if not math.isclose(printed, exact, rel_tol=0.01):
                mismatched.add(w)
            rows.append([fmt(x) for x in (w, i + 1, d, exact, text, printed, w ** (n - i), g, w ** (n - 1))])
    header = "w | layer l | δ_l measured | exact w^(n−l) | seed text | seed listing prints | "
    out += [markdown_table(header + "listing's code w^(n−l+1) | ∂L/∂W_l measured | exact w^(n−1)", rows), ""]
    if mismatched:
        out.append(
            f"**Disagreement (seed listing):** its loop multiplies δ by w before storing it, so it computes "
            f"w^(n−l+1), one layer off. Its printed output for w = {', '.join(fmt(w) for w in sorted(mismatched))} "
            "shows exactly that (0.5^5 = 0.0312 … 0.5^1 = 0.5) while the w = 2 line shows w^(n−l) = 16 … 1, which "
            "the code does not produce (it would print 32, 16, 8, 4, 2). The measured δ's agree with the text's "
            "16, 8, 4, 2, 1."
        )
    out += [
        "**Note:** with equal weights and x = 1 every weight gets the same gradient w^(n−1) (16 at w = 2), "
        "not 16, 8, 4, 2, 1: the geometric sequence is the backward signal δ, not ∂L/∂W.",
        "",
    ]
    rows = []
    for w, n in [(w, n) for w, n in ((2.0, 5), (2.0, 20), (0.5, 20)) if (w, n) in by]:
        run = by[(w, n)]
        ratio, w_before = first(run, "update_ratio/layer/"), first(run, "weight/layer/")
        change = ratio * w_before if ratio is not None and w_before is not None else None
        seed_change = pub.SEED_STEP_CHANGE if n == 5 and w == 2 else (pub.SEED_DEPTH20_UPDATE if w == 2 else None)
        seed_d1 = 16.0 if n == 5 and w == 2 else (pub.SEED_DEPTH20_DELTA1 if w == 2 else None)
        precise = [fmt(x, 7) for x in (first(run, "delta/layer/"), seed_d1, first(run, "grad/layer/"))]
        after = [fmt(x, 6) for x in (first(run, "weight/layer/", 1), change, seed_change)]
        percent = f"{100 * ratio:.4g}%" if ratio is not None else fmt(None)
        rows.append([fmt(w), str(n), *precise, fmt(w_before), *after, percent])
    header = "w | n | δ_1 measured | seed δ_1 | ∂L/∂W_1 | ‖W_1‖ step 0 | ‖W_1‖ after step | ΔW_1 size | seed ΔW_1"
    out += [markdown_table(header + " | ΔW_1 / W_1", rows), ""]
    if (2.0, 20) in by:
        after = [v for s, v in by[(2.0, 20)].curve("train/loss") if s == 1]
        out.append(
            "The seed's 20-layer update 52,428 is 0.1 × 2^19 = 52,428.8 rounded down. Every layer gets that "
            "update, so the output after the step is about (−52,427)^20: the measured loss at step 1 is "
            f'{fmt(after[0] if after else None)} (float32 overflows at 3.4e38; the seed\'s "NaN weights").'
        )
    panels = {}
    for n in (5, 20):
        profiles = [(f"w = {fmt(w)}", by[(w, n)].at_step("delta/layer/", 0)) for w in (0.5, 1.0, 2.0) if (w, n) in by]
        if profiles:
            panels[f"depth {n}: δ per layer at step 0"] = profiles
    if panels:
        out += [
            "",
            image(
                "δ per layer",
                layer_profiles(panels, "‖∂L/∂a_l‖", docs / "img" / "seed_chain.png"),
                docs,
                "δ_l against the layer on a log scale: a straight line is geometric — rising toward the input "
                "for w > 1 (explosion), falling for w < 1 (vanishing), flat only at w = 1.",
            ),
        ]
    return out


def task_text(run: Run) -> str:
    task, seq_len, rule = run.summary.get("task"), run.summary.get("seq_len"), run.summary.get("baseline_rule")
    return f"{task} T = {seq_len} flattened (trivial baseline: {rule})"


def mlp_setup(run: Run, training: str) -> str:
    """The deep-MLP experiments' setting in one sentence; ``training`` names the init and optimizer."""
    depth, width, steps = (run.cfg(k) for k in ("model.depth", "model.width", "trainer.max_steps"))
    return f"Depth {depth}, width {width}, {training}, no clipping, {steps} steps, {task_text(run)}."


MLP_COLUMNS = "‖∇W‖ layer 1 (step 0) | ‖∇W‖ head (step 0) | ratio | final val loss | best val loss | final val acc"


def mlp_table(runs: list[Run], keys: list[str], names: str) -> str:
    """One row per run: the ``keys`` config values, then the step-0 gradient profile's ends and the losses."""
    rows = []
    for run in runs:
        grads = list(run.at_step("grad/layer/", 0).values()) or [None]
        layer1, head = grads[0], grads[-1]
        ratio = layer1 / head if layer1 is not None and head else None
        numbers = [fmt(x) for x in (layer1, head, ratio, run.final("val/loss"), run.best("val/loss"))]
        rows.append([*(str(run.cfg(k)) for k in keys), *numbers, fmt(run.final("val/acc"), 3), status_text(run)])
    return markdown_table(f"{names} | {MLP_COLUMNS} | status", rows)


def init_section(runs: list[Run], docs: Path) -> list[str]:
    r0 = runs[0]
    out = [
        f"MLP width {r0.cfg('model.width')}, {task_text(r0)}, SGD lr {r0.cfg('optimizer.lr')} "
        f"momentum {r0.cfg('optimizer.momentum')}, no clipping, "
        f"{r0.cfg('trainer.max_steps')} steps, batch {r0.cfg('data.batch_size')}. N(0,1) = `model.init=normal "
        "model.init_std=1`. Gradient norms are GradNormMonitor's `grad/layer/*` at step 0.",
        "",
        f'Seed claim: "{pub.SEED_INIT_CLAIM}".',
        "",
    ]
    keys = ["model.activation", "model.depth", "model.init"]
    runs = sorted(runs, key=lambda r: tuple(r.cfg(k) for k in keys))
    out += [mlp_table(runs, keys, "activation | depth | init"), ""]
    activations = sorted({r.cfg("model.activation") for r in runs})
    for act in activations:  # the claim, per activation: N(0,1) against He at each depth
        lines = []
        for depth in sorted({r.cfg("model.depth") for r in runs}):
            cell = {
                r.cfg("model.init"): r
                for r in runs
                if (r.cfg("model.activation"), r.cfg("model.depth")) == (act, depth)
            }
            normal, he = cell.get("normal"), cell.get("he")
            gn, gh = (first(normal, "grad/layer/") if normal else None), (first(he, "grad/layer/") if he else None)
            if normal is None or he is None or gn is None or gh is None:
                continue
            factor = gn / gh if gh and math.isfinite(gn) else float("inf")
            lines.append(
                f"depth {depth}: N(0,1) layer-1 gradient {fmt(gn)} = {fmt(factor, 3)}× He's; "
                f"N(0,1) run {status_text(normal)}, He run {status_text(he)}"
            )
        out.append(f"- **{act}**: " + "; ".join(lines) + ".")
    panels = {
        f"{act}: ‖∇W_l‖ at step 0": [
            (f"{r.cfg('model.init')} d{r.cfg('model.depth')}", r.at_step("grad/layer/", 0))
            for r in runs
            if r.cfg("model.activation") == act and r.cfg("model.depth") in (10, 50)
        ]
        for act in activations
    }
    img = layer_profiles(panels, "gradient norm per layer", docs / "img" / "init_study.png")
    caption = (
        "the step-0 gradient norm of each layer, input layer on the left, log scale. A line that climbs toward "
        "the input by orders of magnitude is an exploding initialisation; a line that falls is a vanishing one; "
        "compare N(0,1) with He and Xavier at the same depth."
    )
    return [*out, "", image("step-0 gradient profiles", img, docs, caption)]


def norm_residual_section(runs: list[Run], docs: Path) -> list[str]:
    r0 = runs[0]
    out = [
        mlp_setup(r0, f"He init, relu, Adam lr {r0.cfg('optimizer.lr')}")
        + " `residual=true` is the ResNet-style block h ← h + f(h).",
        "",
    ]
    runs = sorted(runs, key=lambda r: (not r.cfg("model.residual"), str(r.cfg("model.norm"))))
    out.append(mlp_table(runs, ["model.residual", "model.norm"], "residual | norm"))
    curves = [(f"res={r.cfg('model.residual')} {r.cfg('model.norm')}", r) for r in runs]
    img = loss_curves({"validation MSE": curves}, "val/loss", docs / "img" / "norm_residual.png")
    caption = (
        "validation loss against the step per setting; the dotted line is the trivial baseline. A curve that "
        "stays on it learnt nothing, a curve that ends early diverged (red line at its step)."
    )
    return [*out, "", image("validation loss", img, docs, caption)]


def activations_section(runs: list[Run], docs: Path) -> list[str]:
    r0 = runs[0]
    sgd = f"SGD lr {r0.cfg('optimizer.lr')} momentum {r0.cfg('optimizer.momentum')}"
    out = [
        mlp_setup(r0, f"He-style init with each activation's gain, {sgd}"),
        "",
        mlp_table(runs, ["model.activation"], "activation"),
    ]
    profiles = [(str(r.cfg("model.activation")), r.at_step("grad/layer/", 0)) for r in runs]
    img = layer_profiles({"‖∇W_l‖ at step 0": profiles}, "gradient norm per layer", docs / "img" / "activations.png")
    caption = (
        "the step-0 gradient norm per layer for each activation at its variance-preserving gain: a flat line "
        "means the gain kept the gradient's scale through the depth; a slope means it did not."
    )
    return [*out, "", image("step-0 gradient profiles", img, docs, caption)]


def optimizer_text(run: Run) -> str:
    name = run.summary.get("choices", {}).get("optimizer", "?")
    momentum = run.cfg("optimizer.momentum")
    return f"{name} lr {run.cfg('optimizer.lr')}" + (f" momentum {momentum}" if momentum else "")


def solved(run: Run) -> int | None:
    return criteria.steps_to_solve(run.curve("val/loss"), run.baseline)


def clip_section(runs: list[Run], docs: Path) -> list[str]:
    r0 = runs[0]
    base = r0.baseline or float("nan")
    out = [
        f"{r0.model} on adding T = {r0.summary.get('seq_len')}, {optimizer_text(r0)}, batch "
        f"{r0.cfg('data.batch_size')}, {r0.cfg('trainer.max_steps')} steps; global-norm clipping at each "
        "threshold (clip = 1.0 and none are the flagship's runs). Clipped fraction (0: the threshold never "
        "acted) and mean pre-clip norm from GradNormMonitor.",
        "",
        f'Seed: "{pub.SEED_CLIP_CLAIM}" — {pub.PASCANU_CLIP}.',
        "",
    ]
    runs = sorted(runs, key=lambda r: (r.summary.get("clip") or math.inf, r.summary.get("seed", 0)))
    rows = []
    for run in runs:
        steps = [fmt(solved(run)), fmt(run.first_step_below("val/loss", 0.01 * base)), fmt(run.final("val/loss"))]
        norms = [
            run.summary.get("steps_clipped", 0) / max(1, run.summary.get("optimizer_steps") or 1),
            run.mean("grad/norm_total_preclip"),
            run.summary.get("max_grad_norm"),
        ]
        cells = [str(run.summary.get("clip")), str(run.summary.get("seed")), *steps]
        rows.append([*cells, *(fmt(x, 3) for x in norms), status_text(run)])
    header = "clip | seed | steps to < 0.1× baseline | steps to < 0.01× baseline | final val MSE"
    out.append(markdown_table(header + " | clipped fraction | mean ‖g‖ | max ‖g‖ | status", rows))
    curves = [(r.clip_label, r) for r in runs if r.summary.get("seed", 0) == r0.summary.get("seed", 0)]
    img = loss_curves({"validation MSE": curves}, "val/loss", docs / "img" / "clip_sweep.png")
    caption = (
        "validation MSE per threshold (one seed drawn); compare when each curve first falls an order of "
        "magnitude below the dotted baseline (steps to solve) and which curves end early (diverged)."
    )
    return [*out, "", image("validation loss", img, docs, caption)]


FLAGSHIP_NORM_RATIO = 100.0  # the unclipped run's largest norm over the clipped run's median (or it diverges)
FLAGSHIP_LOSS_RATIO = 0.5  # the clipped run's final val loss over the baseline: 1/12, remembering one marker only


def flagship_verdicts(runs: list[Run]) -> list[dict[str, object]]:
    """Per seed: does the flagship criterion (conf/experiment/flagship.yaml) hold on this pair of runs?"""
    by_seed: dict[int, dict[str, Run]] = {}
    for run in runs:
        kind = "noclip" if run.summary.get("clip") is None else "clip"
        by_seed.setdefault(int(run.summary.get("seed", 0)), {})[kind] = run
    out = []
    for seed, pair in sorted(by_seed.items()):
        unclipped, clipped = pair.get("noclip"), pair.get("clip")
        if unclipped is None or clipped is None:
            continue
        median, largest = clipped.median("grad/norm_total_preclip"), largest_finite_norm(unclipped)
        exploded = unclipped.status == "diverged" or (
            median is not None and largest is not None and largest >= FLAGSHIP_NORM_RATIO * median
        )
        ratio = criteria.vs_baseline(clipped.final("val/loss"), clipped.baseline)
        learned = ratio is not None and ratio <= FLAGSHIP_LOSS_RATIO
        out.append(
            {"seed": seed, "unclipped": unclipped, "clipped": clipped, "median": median, "largest": largest,
             "exploded": exploded, "ratio": ratio, "learned": learned, "holds": exploded and learned}
        )  # fmt: skip
    return out


def flagship_section(runs: list[Run], docs: Path) -> list[str]:
    verdicts = flagship_verdicts(runs)
    if not verdicts:
        return ["(no complete pair of runs)"]
    r0 = verdicts[0]["clipped"]
    assert isinstance(r0, Run)
    out = [
        f"`model=rnn` with every other setting at its default: tanh RNN, hidden {r0.cfg('model.hidden_size')}, "
        f"adding T = {r0.cfg('data.seq_len')}, SGD lr {r0.cfg('optimizer.lr')} momentum "
        f"{r0.cfg('optimizer.momentum')}, batch {r0.cfg('data.batch_size')}, {r0.cfg('trainer.max_steps')} steps; "
        "`clip=null` against `clip=1.0`. Criterion, fixed before the runs: per seed, the unclipped run's largest "
        f"pre-clip norm ≥ {FLAGSHIP_NORM_RATIO:g}× the clipped run's median logged norm (or it diverges), and the "
        f"clipped run's final val loss ≤ {FLAGSHIP_LOSS_RATIO}× the baseline.",
        "",
    ]
    rows = []
    for v in verdicts:
        un, cl = v["unclipped"], v["clipped"]
        assert isinstance(un, Run) and isinstance(cl, Run)
        rows.append(
            [str(v["seed"]), status_text(un), fmt(v["largest"], 3), fmt(un.final("val/loss")), fmt(v["median"], 3),
             fmt(cl.final("val/loss")), fmt(cl.summary.get("best_val_loss")), fmt(v["ratio"], 3),
             fmt(cl.summary.get("steps_to_solve")), fmt(cl.summary.get("wall_time_s"), 3),
             "holds" if v["holds"] else "fails"]
        )  # fmt: skip
    header = "seed | clip=null: status | largest finite ‖g‖ | final val | clip=1.0: median ‖g‖ | final val | best val"
    out.append(markdown_table(header + " | val / baseline | steps to solve | wall s | criterion", rows))
    held = sum(bool(v["holds"]) for v in verdicts)
    return [*out, "", f"**Verdict: the criterion holds on {held} of {len(verdicts)} seeds.**"]


def vanishing_section(runs: list[Run], docs: Path) -> list[str]:
    r0 = runs[0]
    out = [
        f"The flagship tanh RNN at T = {r0.cfg('data.seq_len')}, otherwise as above. The claims table's "
        "`clip.vanishing` row holds the criterion; per run here: the median over logged steps (after step 0) of "
        "‖dL/dh_0‖ / ‖dL/dh_(T−1)‖, how much of the loss's gradient reaches the first marker.",
        "",
    ]
    rows = []
    for run in sorted(runs, key=lambda r: (r.summary.get("clip") is not None, r.summary.get("seed", 0))):
        clipped_steps = f"{run.summary.get('steps_clipped', 0)} of {run.summary.get('optimizer_steps', 0)} steps"
        losses = [fmt(run.final("val/loss")), fmt(run.summary.get("best_val_loss"))]
        ratios = sorted(v for s, v in run.curve("time_grad/ratio_first_last") if s > 0 and math.isfinite(v))
        median_ratio = ratios[len(ratios) // 2] if ratios else None
        clip = "null" if run.summary.get("clip") is None else str(run.summary["clip"])
        cells = [clip, str(run.summary.get("seed")), status_text(run), *losses, fmt(largest_finite_norm(run), 3)]
        rows.append([*cells, clipped_steps, fmt(median_ratio, 3)])
    header = (
        "clip | seed | status | final val | best val | largest finite ‖g‖ | clipped | median ‖dL/dh_0‖/‖dL/dh_(T−1)‖"
    )
    out.append(markdown_table(header, rows))
    return out


SECTIONS: dict[str, Section] = {
    "flagship": flagship_section,
    "vanishing": vanishing_section,
    "seed_chain": chain_section,
    "init_study": init_section,
    "norm_residual": norm_residual_section,
    "activations": activations_section,
    "clip_sweep": clip_section,
}


def experiment_arm(name: str) -> Callable[[Run], str | None]:
    """How the claims label this experiment's runs (the first claim that reads it), else the run's name."""
    arm = next((c.arm for c in cl.CLAIMS if name in c.experiments and c.arm is not None), None)
    return arm or (lambda run: str(run.summary.get("name", run.run_dir.name)))


def generic_section(name: str, runs: list[Run], docs: Path) -> list[str]:
    """One row per run labelled as its claims label it, and seed 0's validation curves."""
    arm = experiment_arm(name)
    labelled_runs = sorted(((a, r) for r in runs if (a := arm(r)) is not None), key=lambda x: (x[0], seed_of(x[1])))
    r0 = runs[0]
    out = [
        f"{r0.model}, {r0.summary.get('task')} T = {r0.summary.get('seq_len')} (trivial baseline: "
        f"{r0.summary.get('baseline_rule')}), {optimizer_text(r0)} (the first job's; the setting column says what "
        f"varies), batch {r0.cfg('data.batch_size')}, {r0.cfg('trainer.max_steps')} steps, clip {r0.clip_label}. "
        f"Settings and the criterion: conf/experiment/{name}.yaml; verdicts in the claims table.",
        "",
    ]
    rows = []
    for label, run in labelled_runs:
        base = run.baseline
        numbers = [run.final("val/loss"), run.best("val/loss"), criteria.vs_baseline(run.final("val/loss"), base)]
        steps = run.summary.get("steps_to_solve")
        cells = [
            label,
            str(seed_of(run)),
            *(fmt(x) for x in numbers),
            fmt(steps),
            fmt(run.summary.get("max_grad_norm"), 3),
        ]
        rows.append([*cells, status_text(run)])
    header = "setting | seed | final val | best val | final / baseline | steps to solve | max ‖g‖ | status"
    out.append(markdown_table(header, rows))
    seed = min(seed_of(r) for _, r in labelled_runs) if labelled_runs else 0
    curves = [(label, run) for label, run in labelled_runs if seed_of(run) == seed]
    if any(len(run.curve("val/loss")) > 1 for _, run in curves):
        img = loss_curves({f"validation loss, seed {seed}": curves}, "val/loss", docs / "img" / f"{name}.png")
        caption = (
            f"validation loss against the step for each setting (seed {seed}); the dotted line is the trivial "
            "baseline. A curve that stays on it learnt nothing; one that ends early diverged (red line at its step)."
        )
        out += ["", image("validation loss", img, docs, caption)]
    return out + EXTRAS.get(name, lambda rs, d: [])(runs, docs)


def seed_of(run: Run) -> int:
    return int(run.summary.get("seed", 0))


def init_profile_extra(runs: list[Run], docs: Path) -> list[str]:
    """Xiong et al.'s Fig. 3 measured: ‖∇W^(2,l)‖ at step 0 per block, Post-LN against Pre-LN, per depth."""
    panels: dict[str, list[tuple[str, dict[str, float]]]] = {}
    for run in sorted(runs, key=lambda r: (r.cfg("model.depth"), str(r.cfg("model.norm_position")), seed_of(r))):
        proj = {k: v for k, v in run.at_step("grad/layer/", 0).items() if k.endswith(".mlp.proj")}
        label = f"{run.cfg('model.norm_position')}-LN seed {seed_of(run)}"
        panels.setdefault(f"depth {run.cfg('model.depth')}: ‖∇W²‖ per block at step 0", []).append((label, proj))
    if not panels:
        return []
    img = layer_profiles(panels, "‖∇W^(2,l)‖ (block l, input side first)", docs / "img" / "transformer_init.png")
    caption = (
        "the step-0 gradient norm of each block's second feed-forward matrix, first block on the left. Xiong et "
        "al.'s Fig. 3 has Post-LN rising toward the output and Pre-LN flat: compare each line's slope, and "
        "Post-LN's slope with Pre-LN's."
    )
    return ["", image("step-0 W2 gradient per block", img, docs, caption)]


def logit_series(run: Run) -> list[tuple[int, float]]:
    """The largest attention logit over the layers at each logged step."""
    by_step: dict[int, float] = {}
    for key, points in run.series.items():
        if key.startswith("attn/logit_max/"):
            for step, x in points:
                by_step[step] = max(by_step.get(step, -math.inf), x)
    return sorted(by_step.items())


def lr_sweep_extra(runs: list[Run], docs: Path) -> list[str]:
    """Final loss against lr per qk_norm setting (median and range over seeds), and the logits at lr 0.1."""
    lines: dict[str, list[tuple[float, float, float, float]]] = {}
    for qk in (False, True):
        for lr in sorted({float(r.cfg("optimizer.lr")) for r in runs}):
            finals = [
                r.final("val/loss") if r.status != "diverged" else math.inf
                for r in runs
                if r.cfg("model.qk_norm") is qk and float(r.cfg("optimizer.lr")) == lr
            ]
            finals = sorted(x if x is not None and math.isfinite(x) else 1e3 for x in finals)
            if finals:
                lines.setdefault(f"qk_norm={qk}", []).append((lr, finals[len(finals) // 2], finals[0], finals[-1]))
    if not lines:
        return []
    out = [
        "",
        image(
            "final loss against lr",
            sweep_plot(lines, "learning rate", "final validation loss", docs / "img" / "transformer_lr_final.png"),
            docs,
            "final validation loss against the learning rate, median over seeds with the min–max shaded (a failed "
            "run drawn at 1e3). The wider the basin of low loss, the less sensitive to the lr: compare the two lines "
            "at the high learning rates.",
        ),
    ]
    high = [r for r in runs if float(r.cfg("optimizer.lr")) == 0.1 and seed_of(r) == min(map(seed_of, runs))]
    curves = []
    for run in sorted(high, key=lambda r: bool(r.cfg("model.qk_norm"))):
        points = logit_series(run)
        if points:
            steps, values = zip(*points, strict=True)
            curves.append((f"qk_norm={run.cfg('model.qk_norm')}", list(steps), list(values), run.diverged_at))
    if curves:
        img = series_plot(curves, "optimizer step", "largest attention logit (any layer)",
                          docs / "img" / "transformer_logits.png")  # fmt: skip
        out += ["", image("attention logits at lr 0.1", img, docs, (
            "the largest attention logit of any layer at lr 0.1, with and without qk_norm: without it the logits "
            "run away (attention-logit growth) while with it they stay bounded; compare with the loss curves above."
        ))]  # fmt: skip
    return out


EXTRAS: dict[str, Section] = {"transformer_init_profile": init_profile_extra, "transformer_lr_sweep": lr_sweep_extra}


def compare_links(runs: list[Run], sweep_dir: Path, docs: Path, name: str) -> str:
    """scripts/compare.py's plots and table for one experiment's sweep, under docs/img/NAME/, as links."""
    written = compare(runs, docs / "img" / name)
    links = " · ".join(f"[{kind.replace('_', ' ')}]({os.path.relpath(path, docs)})" for kind, path in written.items())
    return f"All runs through `python scripts/compare.py {sweep_dir}`: {links}."


def machine() -> str:
    return (
        f"{cpu_name()}, {os.cpu_count()} cores visible, torch {torch.__version__}, "
        f"Python {platform.python_version()}, {platform.system()}"
    )


def build_report(root: Path, docs: Path) -> Path:
    """Write ``docs/results.md`` (and its PNGs) from the multirun directories under ``root``."""
    timing_path = root / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    suite = timing.pop("_suite", {})
    total = suite.get("elapsed_s") or sum(t["wall_s"] for t in timing.values())
    scales = sorted({t.get("scale", "?") for t in timing.values()})
    threads = sorted({str(t.get("threads", "?")) for t in timing.values()})
    walls = ", ".join(
        f"{k} {v['wall_s']:.0f} s" + ("" if v["returncode"] == 0 else f" exit {v['returncode']}")
        for k, v in timing.items()
    )
    lines = [
        "# Reproductions: measured on this machine",
        "",
        f"Generated by `make reproduce` (scripts/reproduce.py) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"from the runs in `{root}`; scale: {', '.join(scales) or '?'}.",
        f"Machine: {machine()}; every run with OMP_NUM_THREADS={', '.join(threads) or '?'}.",
        f"Total wall time of the runs: {total / 60:.1f} min ({walls}).",
        "",
        "Each experiment is one command, `python scripts/train.py -m experiment=NAME` (full-size settings in "
        "conf/experiment/NAME.yaml); `make reproduce` runs them at the quick scale listed in src/reproduce.py, "
        "`make reproduce ARGS='--scale paper'` as configured. Margins: *beats* the trivial baseline = final "
        f"validation loss < {criteria.BEATS} × baseline; *solved* = < {criteria.SOLVES} × baseline.",
        "",
        *claims_table(cl.evaluate_claims(root)),
        "",
    ]
    for i, exp in enumerate(EXPERIMENTS, 1):
        runs = collect([root / exp.name])
        lines += [f"## {i}. {exp.title}", "", f"`python scripts/train.py -m experiment={exp.name}`", ""]
        if runs:
            section = SECTIONS[exp.name](runs, docs) if exp.name in SECTIONS else generic_section(exp.name, runs, docs)
            lines += [*section, "", compare_links(runs, root / exp.name, docs, exp.name), ""]
        else:
            lines += ["(not run)", ""]
    docs.mkdir(parents=True, exist_ok=True)
    path = docs / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path
