"""ThroughTimeMonitor: ||dL/dh_t|| for every time step t, and σ_max of every recurrent weight matrix.

Backpropagation through time multiplies one Jacobian diag(σ'(a_t))·W_hh per step, so the gradient that
reaches h_t from a loss at the end shrinks or grows geometrically with T − t: the vanishing and exploding
gradient problem in one picture. Pascanu, Mikolov & Bengio (2013), §2.1: with |σ'| ≤ γ, σ_max(W_hh) < 1/γ
is *sufficient* for the long-term components to vanish, so explosion *needs* σ_max(W_hh) > 1/γ;
γ = 1 for tanh (threshold 1), γ = 1/4 for the logistic sigmoid (threshold 4). For ReLU, σ' ∈ {0, 1}, so the
threshold is 1 as for tanh. For LSTM/GRU the stacked gate matrix's σ_max is logged; the bound is the
vanilla RNN's and does not transfer directly (the cell state's additive path is what LSTMs add).

Training stays on the fused kernels. On logging steps, after backward and before clipping and the update,
the monitor makes one extra forward/backward over the same weights with every recurrent module run by an
unrolled loop (unrolled_rnn.py), in fp32 (autocast off), and takes dL/dh_t with ``torch.autograd.grad``
with respect to the hidden states only: no parameter's ``.grad`` is touched. The RNG state and the
module's buffers (BatchNorm running statistics) are restored afterwards, so a run with the monitor follows
the same trajectory as one without.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence
from torch.optim import Optimizer
from typing_extensions import override

from src.callbacks.schedule import Monitor
from src.callbacks.unrolled_rnn import unroll_support, unrolled_forward
from src.grad_norms import squared_norm

LossFn = Callable[[L.LightningModule, Any], Tensor]
Profiles = dict[tuple[str, int], Tensor]  # (module name, layer) -> (T,) ||dL/dh_t||


def training_step_loss(pl_module: L.LightningModule, batch: Any) -> Tensor:
    """The default diagnostic loss: ``pl_module.training_step(batch, 0)`` with ``log``/``log_dict`` silenced.

    Accepts a returned tensor or a dict with a ``"loss"`` entry (Lightning's two conventions).
    """
    silent = lambda *args, **kwargs: None  # noqa: E731
    pl_module.log, pl_module.log_dict = silent, silent  # type: ignore[method-assign]
    try:
        out = pl_module.training_step(batch, 0)
    finally:
        del pl_module.log, pl_module.log_dict  # the instance attributes go, the methods are back
    return out["loss"] if isinstance(out, dict) else out


@contextmanager
def unrolled(modules: dict[str, nn.RNNBase]) -> Iterator[dict[str, list[list[Tensor]]]]:
    """Inside the block, each module in ``modules`` runs the unrolled loop and its hidden states are kept."""
    states: dict[str, list[list[Tensor]]] = {}

    def patched(name: str, rnn: nn.RNNBase) -> Callable[..., Any]:
        fused = type(rnn).forward

        def forward(input: Any, hx: Any = None) -> Any:
            if isinstance(input, PackedSequence):  # variable lengths: not unrolled, the profile is skipped
                return fused(rnn, input, hx)
            output, hidden, per_layer = unrolled_forward(rnn, input, hx)
            states[name] = per_layer
            return output, hidden

        return forward

    for name, rnn in modules.items():
        rnn.forward = patched(name, rnn)  # an instance attribute shadows the class's forward
    try:
        yield states
    finally:
        for rnn in modules.values():
            del rnn.forward


@contextmanager
def side_effects_undone(module: nn.Module) -> Iterator[None]:
    """Restore the RNG streams (dropout) and buffers (BatchNorm statistics) a diagnostic pass changed."""
    buffers = [b.detach().clone() for b in module.buffers()]
    devices = [d for d in {p.device for p in module.parameters()} if d.type == "cuda"]
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            with torch.no_grad():
                for buffer, saved in zip(module.buffers(), buffers, strict=True):
                    buffer.copy_(saved)


def sigma_max(matrix: Tensor) -> Tensor:
    """The largest singular value of ``matrix`` in float32, NaN when it holds a non-finite entry.

    The SVD refuses non-finite input, and under ``on_nonfinite=warn`` a run goes on with NaN weights; the
    check stays on the device (no host sync).
    """
    matrix = matrix.float()
    finite = torch.isfinite(matrix).all()
    sigma = torch.linalg.matrix_norm(torch.where(finite, matrix, torch.zeros_like(matrix)), ord=2)
    return torch.where(finite, sigma, torch.full_like(sigma, math.nan))


class ThroughTimeMonitor(Monitor):
    """On the logging steps of ``src.callbacks.schedule`` (step 0 included), on rank 0:

    - ``time_grad/t=<t>`` (t = 0 .. T−1, every ``ceil(T / max_points)``-th t, and always the last):
      ||dL/dh_t|| of the top layer of the first recurrent module, over the batch of that step (its last
      micro-batch under accumulation);
    - ``time_grad/ratio_first_last``: ||dL/dh_0|| / ||dL/dh_(T−1)|| (≪ 1: vanishing, ≫ 1: exploding);
    - ``rnn/sigma_max/<module>.weight_hh_l<k>``: largest singular value of each recurrent weight matrix;
    - every layer's whole profile as rows (step, module, layer, t, grad_norm) of ``through_time.csv`` in the
      trainer's log directory;
    - when a WandbLogger is attached, at the end of training: one W&B line chart (``time_grad/profile``) of
      log10 ||dL/dh_t|| of the ``time_grad/t=*`` layer, one line per logged step (exponential growth or decay
      is a straight line there). One chart a run, not one a logging step: a W&B chart is a table artifact
      written to disk, which cost two to three times the diagnostic pass itself.

    ``loss_fn(pl_module, batch) -> Tensor`` gives the loss of the diagnostic pass; by default the module's
    own ``training_step`` (see ``training_step_loss``). Bidirectional modules, LSTMs with ``proj_size`` and
    packed sequences are not unrolled (σ_max is still logged). The pass runs on rank 0 alone, so a model
    whose forward makes collective calls (SyncBatchNorm) needs ``every_n_steps`` set with care under DDP.

    Args:
        every_n_steps: logging interval in optimizer steps; None uses the Trainer's ``log_every_n_steps``.
        max_points: at most this many ``time_grad/t=<t>`` scalars (``through_time.csv`` keeps every t).
        loss_fn: the loss of the diagnostic pass, ``loss_fn(pl_module, batch) -> Tensor``; None for
            ``training_step_loss``.

    Raises:
        ValueError: ``every_n_steps`` < 1 or ``max_points`` < 2.
    """

    def __init__(self, every_n_steps: int | None = None, max_points: int = 64, loss_fn: LossFn | None = None) -> None:
        super().__init__(every_n_steps)
        if max_points < 2:
            raise ValueError(f"max_points={max_points} is not allowed; expected an integer >= 2 (first and last step)")
        self.max_points = max_points
        self.loss_fn = loss_fn or training_step_loss
        self.log_dir: Path | None = None
        self._batch: Any = None
        self._warned: set[str] = set()
        self._history: list[tuple[int, list[float]]] = []  # (step, the time_grad/t=* layer's profile), for W&B

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # trainer.log_dir broadcasts from rank 0: it has to be read here, where every rank takes part
        log_dir = trainer.log_dir
        self.log_dir = Path(log_dir if log_dir is not None else trainer.default_root_dir)
        self._history = []

    def _recurrent_modules(self, pl_module: L.LightningModule) -> dict[str, nn.RNNBase]:
        modules = {}
        for name, m in pl_module.named_modules():
            if not isinstance(m, nn.RNNBase):
                continue
            reason = unroll_support(m)
            if reason is None:
                modules[name] = m
            elif name not in self._warned:
                self._warned.add(name)
                rank_zero_warn(f"ThroughTimeMonitor: {name} is a {reason} module; its profile is not measured")
        return modules

    @override
    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        logging = self.logs_at(trainer, self.upcoming_step(trainer)) and self.on_logging_rank(trainer)
        self._batch = batch if logging else None

    @override
    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer) -> None:
        batch, self._batch = self._batch, None
        if batch is None:
            return
        step = self.upcoming_step(trainer)
        metrics: dict[str, Tensor | float] = {}
        for name, m in pl_module.named_modules():
            if isinstance(m, nn.RNNBase):
                for layer in range(m.num_layers):
                    w_hh = getattr(m, f"weight_hh_l{layer}").detach()
                    metrics[f"rnn/sigma_max/{name}.weight_hh_l{layer}"] = sigma_max(w_hh)
        modules = self._recurrent_modules(pl_module)
        profiles = self.profiles(pl_module, batch, modules) if modules else {}
        if profiles:
            first = next(iter(profiles))[0]
            top_key = (first, max(layer for name, layer in profiles if name == first))
            top = profiles[top_key]
            stride = max(1, math.ceil(len(top) / self.max_points))
            for t in sorted({*range(0, len(top), stride), len(top) - 1}):
                metrics[f"time_grad/t={t}"] = top[t]
            metrics["time_grad/ratio_first_last"] = top[0] / top[-1]
        self.emit(trainer, metrics, step)
        if profiles:
            host = self._write(trainer, step, profiles)
            self._history.append((step, host[top_key]))

    def profiles(self, pl_module: L.LightningModule, batch: Any, modules: dict[str, nn.RNNBase]) -> Profiles:
        """||dL/dh_t|| of every layer of every module in ``modules``, from one unrolled fp32 pass."""
        with (
            side_effects_undone(pl_module),
            torch.enable_grad(),
            torch.autocast(device_type=pl_module.device.type, enabled=False),
            unrolled(modules) as states,
        ):
            loss = self.loss_fn(pl_module, batch)
            keys = [(name, layer) for name, layers in states.items() for layer in range(len(layers))]
            hidden = [h for name, layer in keys for h in states[name][layer]]
            if not hidden or loss is None or not loss.requires_grad:
                return {}
            grads = torch.autograd.grad(loss.float(), hidden, allow_unused=True)
        zero = torch.zeros((), device=hidden[0].device)
        # the square root before the cast: squared norms below 1e-38 do not survive float32
        norms = torch.stack([squared_norm(g).sqrt().float() if g is not None else zero for g in grads])
        lengths = [len(states[name][layer]) for name, layer in keys]
        return dict(zip(keys, norms.split(lengths), strict=True))

    def _write(self, trainer: L.Trainer, step: int, profiles: Profiles) -> dict[tuple[str, int], list[float]]:
        """Append the profiles to ``through_time.csv``; returns them on the host."""
        host = {key: p.tolist() for key, p in profiles.items()}  # one transfer per layer, logging steps only
        log_dir = self.log_dir or Path(trainer.default_root_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / "through_time.csv"
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "module", "layer", "t", "grad_norm"])
            for (name, layer), values in host.items():
                writer.writerows((step, name, layer, t, v) for t, v in enumerate(values))
        return host

    @override
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not self._history or not wandb_loggers or not trainer.is_global_zero:
            return
        import wandb

        chart = wandb.plot.line_series(
            xs=list(range(max(len(values) for _, values in self._history))),
            ys=[[math.log10(v) if v > 0 else float("nan") for v in values] for _, values in self._history],
            keys=[f"step {step}" for step, _ in self._history],
            title="log10 ||dL/dh_t||, one line per logged step",
            xname="t",
        )
        for logger in wandb_loggers:
            logger.experiment.log({"time_grad/profile": chart, "trainer/global_step": self._history[-1][0]})
