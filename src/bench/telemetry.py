"""What gradient telemetry costs: training steps/s with and without it, side by side in one run.

    python scripts/bench.py telemetry [--steps 500] [--repeats 5] [--models mlp rnn rnn_large] [--clip 1.0]
                                      [--variants ...] [--device cpu|cuda]

Variants, each on the same model, data, Trainer settings, clipping (``--clip``: the global-norm clip at 1.0, the
default run's, through gradlab's one clipping path, src/clipping/apply.py, which takes the step's norms from
the monitors when they have read them) and logger (a W&B run, offline): ``none``;
``norm_floor`` (one ``torch._foreach_norm`` over the gradients per step, on device: what any monitor of the
per-step pre-clip norm must cost); ``default`` (the monitors of conf/callbacks/default.yaml); ``lightning_recipe``
(``self.log_dict(grad_norm(self, norm_type=2))`` in ``on_before_optimizer_step``, Lightning's documented way);
``watch_1`` / ``watch_50`` (``wandb.watch(model, log="all", log_freq=...)``). Models: a 50-layer width-256 tanh
MLP, a tanh RNN (hidden 128, T = 100, batch 32), on request ``rnn_large`` (hidden 512, T = 200, batch 256).

Ratios are medians of per-repeat ratios against the ``none`` run of the same repeat, per wall and per CPU second
(the steadier one on a shared machine), with their range over the repeats (``_min``/``_max``). Whole runs
scatter by several percent, so each callback's hooks and the module's clip are also timed directly (CPU time
inside them; on CUDA the host's share); ``added`` is what a variant adds to a step: its hooks and its clip, less
the clip of the ``none`` run of the same repeat (there the clip reads the norms itself; with the monitors it
reuses theirs). ``log_every_n_steps=25``, the default: the 500-step window holds a long run's share of
logging, through-time and histogram steps.

``in_run``: the whole-step cost of the ``default`` monitors measured inside one run per model (``--in-run-steps``,
``--block``), their hooks on only in every other block of steps (``src.bench.overhead.BlockGate``), so the
machine's drift reaches both sides: the median over block pairs of the plain steps' difference, what the logging
steps (through-time and histogram passes included) add per step, and ``share``, both over the step without them.
The "off" blocks clip as ``none`` does, reading the norms themselves.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import grad_norm
from omegaconf import OmegaConf
from torch import Tensor, nn

from src.bench._device import accelerator
from src.bench._harness import StepTimer, Tables, UsageError, interleaved, run, spread
from src.bench.overhead import BlockGate, split
from src.build import can_record
from src.callbacks.group import group_callbacks
from src.clipping.apply import ClipReport, clip_gradients
from src.config.compose import compose_run
from src.grad_norms import fused_norms

DEFAULTS = {"steps": 500, "warmup": 10, "repeats": 5}
TELEMETRY_CLASSES = (
    "GradNormMonitor",
    "WeightMonitor",
    "ActivationMonitor",
    "AttentionMonitor",
    "ThroughTimeMonitor",
    "HistogramMonitor",
)
VARIANTS = ("none", "norm_floor", "default", "lightning_recipe", "watch_1", "watch_50")
LOG_EVERY_N_STEPS = 25


class Regression(L.LightningModule):
    """The benchmarks' LightningModule: MSE regression on ``network``, plain SGD.

    Args:
        network: an MLP, or (sequence=True) a recurrent layer followed by a linear head.
        sequence: whether ``network[0]`` reads (B, T, F) sequences and the head the last step.
    """

    def __init__(self, network: nn.Module, sequence: bool) -> None:
        super().__init__()
        self.network, self.sequence = network, sequence

    def forward(self, x: Tensor) -> Tensor:
        if self.sequence:
            out, _ = self.network[0](x)  # (B, T, H)
            return self.network[1](out[:, -1])
        return self.network(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=1e-3)

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: Any = None,
    ) -> None:
        self._clip_report = clip_gradients(self, optimizer, gradient_clip_val, gradient_clip_algorithm)

    def clip_report(self) -> ClipReport | None:
        """What the clip did this step (``src.clipping.ReportsClipping``): GradNormMonitor's post-clip norm."""
        return getattr(self, "_clip_report", None)


def mlp() -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(50):
        layers += [nn.Linear(256, 256), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(256, 1))


def rnn(hidden: int = 128) -> nn.Module:
    return nn.Sequential(nn.RNN(8, hidden, batch_first=True), nn.Linear(hidden, 1))


MODELS: dict[str, tuple[Callable[[], nn.Module], bool, tuple[int, ...]]] = {
    # name: (network, is a sequence model, input shape of one batch)
    "mlp": (mlp, False, (64, 256)),
    "rnn": (rnn, True, (32, 100, 8)),
    "rnn_large": (lambda: rnn(512), True, (256, 200, 8)),  # enough work per step to keep a GPU busy
}
DEFAULT_MODELS = ["mlp", "rnn"]


def batches(shape: tuple[int, ...], n: int, device: torch.device) -> list[tuple[Tensor, Tensor]]:
    """``n`` distinct batches made up front on the device: the loop measures training, not data."""
    g = torch.Generator(device="cpu").manual_seed(0)
    out = []
    for _ in range(n):
        x = torch.randn(shape, generator=g)
        out.append((x.to(device), x.flatten(1).mean(1, keepdim=True).to(device)))
    return out


def regression(model: str) -> Regression:
    make, sequence, _ = MODELS[model]
    torch.manual_seed(0)
    return Regression(make(), sequence)


def fit(
    module: Regression,
    model: str,
    callbacks: list[L.Callback],
    steps: int,
    device: torch.device,
    logger: Any = False,
    clip: float | None = None,
) -> L.Trainer:
    """Train ``module`` for ``steps`` optimizer steps on 16 of ``model``'s batches made up front (cycled),
    clipping the global gradient norm at ``clip`` (None: no clipping)."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            accelerator=accelerator(device),
            devices=1,
            max_steps=steps,
            log_every_n_steps=LOG_EVERY_N_STEPS,
            gradient_clip_val=clip,
            logger=logger,
            callbacks=callbacks,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp,
        )
        trainer.fit(module, torch.utils.data.DataLoader(batches(MODELS[model][2], 16, device), batch_size=None))
    return trainer


class LightningRecipe(L.Callback):
    """Lightning's documented way to watch gradient norms (LightningModule.on_before_optimizer_step docs)."""

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        pl_module.log_dict(grad_norm(pl_module, norm_type=2))


class NormFloor(L.Callback):
    """The total pre-clip gradient norm every optimizer step, on device, and nothing else."""

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.norm = torch.linalg.vector_norm(fused_norms(grads))


class HookClock(L.Callback):
    """CPU seconds spent inside each wrapped callback's hooks, from optimizer step ``warmup`` on.

    Put it first in the Trainer's callback list: at the first timed batch it clears what the warm-up
    steps recorded, before the other callbacks' hooks of that batch run.

    Args:
        warmup: optimizer steps before the clock starts.
    """

    HOOKS = tuple(h for h in vars(L.Callback) if h.startswith("on_") or h in ("setup", "teardown"))

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def wrap(self, callback: L.Callback) -> L.Callback:
        """Time every hook ``callback``'s class overrides (instance attributes shadow the methods)."""
        for hook in self.HOOKS:
            if getattr(type(callback), hook) is not getattr(L.Callback, hook):
                setattr(callback, hook, self._timed(type(callback).__name__, getattr(callback, hook)))
        return callback

    def _timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.process_time() - start

        return timed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if trainer.global_step == self.warmup:
            self.seconds.clear()

    def wrap_clip(self, module: L.LightningModule) -> None:
        """Time the module's clip too (``CLIP``): it reads the step's norms itself unless a monitor did first."""
        module.configure_gradient_clipping = self._timed(CLIP, module.configure_gradient_clipping)  # type: ignore[method-assign]


CLIP = "clip (configure_gradient_clipping)"
TELEMETRY = {f"src.callbacks.{name}" for name in TELEMETRY_CLASSES}


def default_monitors(module: L.LightningModule) -> list[L.Callback]:
    """The telemetry entries of conf/callbacks/default.yaml, as a run would build them for ``module``
    (``src.build.can_record``; checkpointing, progress bar and divergence guard are not telemetry: they stay
    out of every variant)."""
    with tempfile.TemporaryDirectory() as tmp:  # conf/callbacks/default.yaml composes one file per callback
        cfg = compose_run(["callbacks=default"], Path(tmp))
    entries = OmegaConf.to_container(cfg.callbacks, resolve=False)
    assert isinstance(entries, dict)
    monitors = [instantiate(c) for c in entries.values() if isinstance(c, dict) and c.get("_target_") in TELEMETRY]
    return [m for m in monitors if can_record(m, cfg, module)]


def logged_fit(
    module: Regression, model: str, callbacks: list[L.Callback], steps: int, args: argparse.Namespace, wandb_run: Any
) -> L.Trainer:
    """``fit`` on ``args.device`` with ``args.clip``, logging to ``wandb_run`` (offline) as every variant does."""
    logger = WandbLogger(experiment=wandb_run, save_dir=wandb_run.dir)  # save_dir: trainer.log_dir, not the cwd
    return fit(module, model, callbacks, steps, args.device, logger, args.clip or None)


Timed = tuple[float, float, dict[str, float], float | None]  # wall rate, CPU rate, CPU ms/step per callback, peak


def run_once(model: str, variant: str, args: argparse.Namespace, wandb_run: Any) -> Timed:
    """One timed run of ``variant`` on ``model``."""
    timer, hook_clock = StepTimer(args.warmup), HookClock(args.warmup)
    callbacks: list[L.Callback] = [hook_clock, timer]
    module = regression(model)
    if variant == "default":
        callbacks += group_callbacks([hook_clock.wrap(c) for c in default_monitors(module)])  # as a run has them
    elif variant in ("norm_floor", "lightning_recipe"):
        callbacks.append(hook_clock.wrap(NormFloor() if variant == "norm_floor" else LightningRecipe()))
    hook_clock.wrap_clip(module)
    watch = variant.startswith("watch_")
    if watch:
        wandb_run.watch(module, log="all", log_freq=int(variant.removeprefix("watch_")))
    try:
        logged_fit(module, model, callbacks, args.warmup + args.steps, args, wandb_run)
    finally:
        if watch:
            wandb_run.unwatch(module)
    per_step = {name: 1e3 * sec / timer.steps for name, sec in hook_clock.seconds.items()}
    return (*timer.rates, per_step, timer.peak_mib)


def in_run(model: str, args: argparse.Namespace, wandb_run: Any) -> dict[str, Any]:
    """The ``default`` monitors' cost inside one run of ``model`` (the module docstring's ``in_run``)."""
    module = regression(model)
    gate = BlockGate(args.block, args.warmup)
    logged_fit(module, model, [gate, *group_callbacks(default_monitors(module))], args.warmup + args.in_run_steps, args,
               wandb_run)  # fmt: skip
    return {"model": model, "clip": args.clip or None, **split(gate, LOG_EVERY_N_STEPS)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=list(MODELS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--clip", type=float, default=1.0, help="global-norm clip of every variant (0: none)")
    parser.add_argument("--in-run-steps", type=int, default=1000, help="timed steps per in-run measurement (0: none)")
    parser.add_argument("--block", type=int, default=4, help="steps per on/off block of the in-run measurement")


def measure(args: argparse.Namespace) -> Tables:
    if "none" not in args.variants:
        raise UsageError("the 'none' variant is the baseline of every ratio")
    if args.block < 1 or 0 < args.in_run_steps < 4 * args.block:
        raise UsageError(
            f"--block={args.block} --in-run-steps={args.in_run_steps} is not allowed; expected --block >= 1 and "
            "--in-run-steps 0 (none) or at least 4 blocks (two on/off pairs)"
        )
    import wandb

    with tempfile.TemporaryDirectory() as tmp:
        wandb_run = wandb.init(mode="offline", dir=tmp, project="gradlab-bench", settings=wandb.Settings(silent=True))
        try:
            results = interleaved(
                args.repeats,
                args.models,
                args.variants,
                lambda model, variant: run_once(model, variant, args, wandb_run),
                lambda t: f"{t[0]:.1f} steps/s, {t[1]:.1f} steps/cpu-s",
            )
            gated = "default" in args.variants and args.in_run_steps > 0
            in_run_rows = [in_run(model, args, wandb_run) for model in args.models] if gated else []
        finally:
            wandb_run.finish()
    rows, callback_rows = [], []
    for (model, variant), runs in results.items():
        base = results[(model, "none")]
        peaks = [r[3] for r in runs if r[3] is not None]
        rows.append(
            {"model": model, "variant": variant, "clip": args.clip or None,
             "steps_per_s": statistics.median(r[0] for r in runs),
             **spread("ratio", (r[0] / b[0] for r, b in zip(runs, base, strict=True))),
             "steps_per_cpu_s": statistics.median(r[1] for r in runs),
             **spread("cpu_ratio", (r[1] / b[1] for r, b in zip(runs, base, strict=True))),
             "peak_mib": max(peaks) if peaks else None}
        )  # fmt: skip
        callbacks = sorted({name for r in runs for name in r[2]}, key=lambda n: -runs[0][2].get(n, 0.0))
        for name in callbacks:
            ms = [r[2].get(name, 0.0) for r in runs]
            share = [m * r[1] / 1e3 for m, r in zip(ms, runs, strict=True)]  # ms/step x steps/CPU-s
            row = {"model": model, "variant": variant, "callback": name, "cpu_ms_per_step": statistics.median(ms)}
            callback_rows.append({**row, "share_of_cpu": statistics.median(share)})
        if variant != "none":  # what the variant adds to a step: its hooks and clip, less the clip of `none`
            added = [sum(r[2].values()) - b[2].get(CLIP, 0.0) for r, b in zip(runs, base, strict=True)]
            share = [a * b[1] / 1e3 for a, b in zip(added, base, strict=True)]  # of the `none` run's CPU step
            row = {"model": model, "variant": variant, "callback": "added (hooks + clip - clip of none)"}
            callback_rows.append({**row, "cpu_ms_per_step": statistics.median(added), **spread("share_of_cpu", share)})
    return {"runs": rows, "callbacks": callback_rows, "in_run": in_run_rows}


def main(argv: list[str]) -> int:
    return run(sys.modules[__name__], argv)
