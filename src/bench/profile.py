"""Where a training step's time goes: a sampling profile (py-spy) of the default run, split by who owns it.

    python scripts/bench.py profile [--steps 600] [--rate 200] [--overrides KEY=VALUE ...]

Runs ``scripts/train.py`` (the default config: every default monitor, the guard, checkpointing, the progress
bar, W&B offline + CSV) under ``py-spy record`` in its own process, and keeps the samples taken inside
Lightning's training batch loop (``training_epoch_loop.advance``, validation left out). Each sample belongs to
the innermost frame of a known owner, read from the leaf up:

- ``math``: the network and its loss (src/models/), autograd's backward, the optimizer's update (torch/optim/)
  and the clip's arithmetic: what the bare PyTorch loop of ``bench loop`` also does;
- ``data``: drawing the batch (src/data/) and the DataLoader's iterator (torch/utils/data/);
- ``gradlab callbacks``: src/callbacks/ (the pre-clip norms of src/grad_norms.py count for their first caller,
  GradNormMonitor, whose cached result the guard and the clip reuse);
- ``loggers``: wandb, Lightning's logger classes, src/loggers.py;
- ``progress bar``: rich, Lightning's progress-bar callbacks and src/callbacks/progress_bar.py;
- ``lightning``: the rest of the loop (hook dispatch, result collection, closures, batch transfer).

Torch's own Python frames (``nn.Module.__call__``, ...) and src/grad_norms.py, src/clipping/ belong to whoever
called them. The sampler runs in another process at ``--rate`` samples per second without pausing the run
(``--nonblocking``), so it slows the run itself very little; shares are of the sampled loop time, ms/step is
that time over the steps run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from src.bench._harness import Tables, UsageError, run
from src.config import CONF_DIR

DEFAULTS = {"steps": 600, "warmup": 0, "repeats": 1}
REPO = CONF_DIR.parent
CATEGORIES = ("math", "data", "lightning", "gradlab callbacks", "loggers", "progress bar")
# (path fragment, owner), first match wins for one frame; a frame matching none is passed through to its caller
OWNERS: tuple[tuple[str, str], ...] = (
    ("rich/", "progress bar"),
    ("lightning/pytorch/callbacks/progress/", "progress bar"),
    ("src/callbacks/progress_bar.py", "progress bar"),
    ("wandb/", "loggers"),
    ("lightning/pytorch/loggers/", "loggers"),
    ("lightning/fabric/loggers/", "loggers"),
    ("src/loggers.py", "loggers"),
    ("src/callbacks/", "gradlab callbacks"),
    ("src/data/", "data"),
    ("torch/utils/data/", "data"),
    ("src/models/", "math"),
    ("torch/autograd/", "math"),
    ("torch/_tensor.py", "math"),  # Tensor.backward
    ("torch/optim/", "math"),
    ("torch/nn/utils/clip_grad.py", "math"),
    ("lightning/", "lightning"),
    ("lightning_utilities/", "lightning"),
    ("torchmetrics/", "lightning"),
)
IN_LOOP = "training_epoch_loop.py"
IN_VALIDATION = "evaluation_loop.py"


def frame_file(frame: str) -> str:
    """``function (path:line)`` -> ``path``."""
    inside = frame[frame.rfind("(") + 1 : frame.rfind(")")] if frame.endswith(")") else ""
    return inside.rsplit(":", 1)[0]


def owner(stack: list[str]) -> str:
    """The category of one sampled stack (root first): its innermost frame with a known owner."""
    for frame in reversed(stack):
        path = frame_file(frame)
        for fragment, category in OWNERS:
            if fragment in path:
                return category
    return "lightning"


def breakdown(raw: str) -> tuple[Counter[str], Counter[str]]:
    """Samples per category, and per (category, owning function), of the training loop in py-spy's raw output."""
    categories: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    for line in raw.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or IN_LOOP not in stack_text or IN_VALIDATION in stack_text:
            continue
        stack, count = stack_text.split(";"), int(count_text)
        category = owner(stack)
        categories[category] += count
        functions[f"{category}: {owning_function(stack, category)}"] += count
    return categories, functions


def owning_function(stack: list[str], category: str) -> str:
    """The innermost frame of ``stack`` owned by ``category``, as ``function (path)``."""
    for frame in reversed(stack):
        path = frame_file(frame)
        if any(fragment in path and cat == category for fragment, cat in OWNERS):
            return f"{frame.split(' (')[0]} ({path})"
    return stack[-1]


def profile_run(args: argparse.Namespace, tmp: Path) -> str:
    """py-spy's raw samples of one default training run of ``args.steps`` steps."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise UsageError("py-spy is not installed (pip install py-spy; it is in the dev extra)")
    out = tmp / "samples.txt"
    train = [sys.executable, str(REPO / "scripts" / "train.py"), f"trainer.max_steps={args.steps}", "test=false"]
    train += [f"hydra.run.dir={tmp / 'run'}", *args.overrides]
    # --nonblocking: read the stacks without pausing the run (a paused run on a busy machine crawls)
    cmd = [spy, "record", "--nonblocking", "--format", "raw", "--rate", str(args.rate), "--output", str(out)]
    proc = subprocess.run([*cmd, "--", *train], cwd=tmp, capture_output=True, text=True, check=False, timeout=1800)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy record failed (exit {proc.returncode}): {proc.stderr[-1500:]}")
    return out.read_text()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=12, help="functions listed, largest first")
    parser.add_argument("--overrides", nargs="*", default=[], help="extra config overrides of the profiled run")


def measure(args: argparse.Namespace) -> Tables:
    if args.device.type != "cpu":
        raise UsageError("--device cuda: the sampling profile is of the CPU run (GPU time is not host samples)")
    with tempfile.TemporaryDirectory() as tmp:
        categories, functions = breakdown(profile_run(args, Path(tmp)))
    total = sum(categories.values())
    if not total:
        raise RuntimeError("py-spy recorded no sample inside the training loop")
    ms = 1e3 / args.rate / args.steps  # one sample's share of one step, in milliseconds
    rows = [
        {"part": c, "ms_per_step": categories[c] * ms, "share": categories[c] / total}
        for c in sorted(CATEGORIES, key=lambda c: -categories[c])
    ]
    rows.append({"part": "total (training loop)", "ms_per_step": total * ms, "share": 1.0})
    top = [{"owner": name, "ms_per_step": n * ms, "share": n / total} for name, n in functions.most_common(args.top)]
    return {"per_step": rows, "largest": top}


def main(argv: list[str]) -> int:
    return run(sys.modules[__name__], argv)
