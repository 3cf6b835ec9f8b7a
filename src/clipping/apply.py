"""Where clipping is applied: every gradient clip of a gradlab run happens in ``clip_gradients`` below.

``GradLabModule.configure_gradient_clipping`` calls it once per optimizer step, where Lightning guarantees the
gradients are fully accumulated, all-reduced under DDP (identical on every rank, so every rank computes the
same threshold) and unscaled under AMP. It applies exactly one of:

- nothing: ``clip=null`` and no rule (no norm is read for clipping);
- Lightning's norm clipping (``clip=<c>``, ``clip_algorithm=norm``): ``torch.nn.utils.clip_grads_with_norm_``
  with the total norm the monitors already took this step (``src.grad_norms.step_grad_norms``), so no
  gradient is read twice; bit-identical to Lightning's ``clip_grad_norm_``, which would read them again.
  Precision plugins that clip their own way (FSDP, DeepSpeed) and fused optimizers under a GradScaler go
  through Lightning's ``clip_gradients`` instead, which also raises Lightning's own errors for them;
- Lightning's value clipping (``clip_algorithm=value``): Lightning's ``clip_gradients``;
- a rule of the ``clipping`` group (src/clipping/: layer-wise, AGC, AutoClip, ZClip), from the same norms.

A step without any gradient — the DivergenceGuard's ``skip`` sets every
``.grad`` to None before this runs (src/callbacks/divergence.py) — has nothing to clip, and stateful rules
must not record it as a norm of 0 (the guard's skip is the one other thing that changes a step's gradients
after backward). The gradient penalty is not clipping: it is a loss term (``loss.grad_penalty``,
src/models/module.py).

What was done goes back as a ``ClipReport``; the LightningModule exposes it through the ``ReportsClipping``
protocol, from which GradNormMonitor logs the post-clip norm without measuring the gradients again (in a
LightningModule without the protocol it measures them itself).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import lightning as L
import torch
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.utilities.enums import GradClipAlgorithmType
from torch import Tensor
from torch.optim import Optimizer

from src.clipping.base import ClipRule
from src.grad_norms import GradStats, LayerIndex, step_grad_norms
from src.steps import upcoming_step


@dataclass(frozen=True)
class ClipReport:
    """What clipping did to the gradients of one optimizer step.

    ``rewritten``: the gradients were rescaled in place (False: they are the pre-clip ones, post = pre).
    ``postclip_norm``: their total 2-norm afterwards when known without another pass; None after a rewrite
    means "not derived" (value clipping): a monitor that needs it measures the gradients.
    ``max_norm``: norm clipping's threshold, which gives the post-clip norm from the pre-clip one without a
    kernel on the step (``postclip``): a monitor derives it when it logs, for all its steps at once.
    ``metrics``: what a rule reports (``clip/threshold``, ``clip/scale``, ...), 0-d tensors logged as they are.
    """

    step: int
    rewritten: bool = False
    postclip_norm: Tensor | None = None
    metrics: Mapping[str, Tensor] = field(default_factory=dict)
    max_norm: float | None = None

    def postclip(self, preclip_norm: Tensor) -> Tensor | None:
        """The total norm after clipping: the known one, else derived from ``max_norm`` (None: not derived)."""
        if self.postclip_norm is not None or self.max_norm is None:
            return self.postclip_norm
        return norm_clipped(preclip_norm, self.max_norm)


def norm_clipped(preclip_norm: Tensor, max_norm: float) -> Tensor:
    """The total norm ``clip_grads_with_norm_`` leaves: ``preclip_norm`` (any shape) times its coefficient
    min(1, max_norm / (norm + 1e-6))."""
    return preclip_norm * torch.clamp(max_norm / (preclip_norm + 1e-6), max=1.0)


@runtime_checkable
class ReportsClipping(Protocol):
    """A LightningModule that clips in ``configure_gradient_clipping`` and says what it did.

    ``clip_report()`` returns the report of the latest optimizer step (or None before the first). Monitors
    read it after the update (``on_train_batch_end``) and use it only when its ``step`` is the one they
    measured; tensors only, so reading it costs no host sync.
    """

    def clip_report(self) -> ClipReport | None: ...


_REPORTS: dict[type, bool] = {}


def reports_clipping(module: object) -> bool:
    """``isinstance(module, ReportsClipping)``, decided once per class: a runtime-checkable protocol inspects
    the object's attributes on every check, twice per optimizer step in GradNormMonitor."""
    cls = type(module)
    if cls not in _REPORTS:
        _REPORTS[cls] = isinstance(module, ReportsClipping)
    return _REPORTS[cls]


# optimizer -> (the layer index and number of param groups compared, whether they hold the same parameters)
_SAME_PARAMS: weakref.WeakKeyDictionary[Optimizer, tuple[LayerIndex, int]] = weakref.WeakKeyDictionary()


def _norm_clipping_is_lightnings(trainer: L.Trainer, optimizer: Optimizer, stats: GradStats) -> bool:
    """Whether Lightning's norm clipping would be ``clip_grad_norm_`` over exactly the gradients of ``stats``."""
    plugin = trainer.precision_plugin
    if type(plugin).clip_grad_by_norm is not Precision.clip_grad_by_norm:  # FSDP, DeepSpeed, ... clip their way
        return False
    if getattr(optimizer, "_step_supports_amp_scaling", False):  # fused: Lightning refuses to clip under AMP
        return False
    # the same parameters in the optimizer as in the model's layers: then the same gradients on every step,
    # known once per optimizer and model structure (a new param group or layer index compares again)
    key = (stats.index, len(optimizer.param_groups))
    if _SAME_PARAMS.get(optimizer) == key:
        return True
    if {id(p) for p in plugin.main_params(optimizer)} == {id(p) for p in stats.params}:
        _SAME_PARAMS[optimizer] = key
        return True
    clipped = {id(p) for p in plugin.main_params(optimizer) if p.grad is not None}
    return clipped == {id(p) for p in stats.params if p.grad is not None}


@functools.cache
def _is_norm_clipping(algorithm: str | GradClipAlgorithmType | None) -> bool:
    """``algorithm`` names norm clipping (None: Lightning's default); parsed once per value (the enum's
    case-insensitive comparison costs more than the rest of a plain step's clipping decision)."""
    return GradClipAlgorithmType(algorithm or "norm") == GradClipAlgorithmType.NORM


def clip_gradients(
    module: L.LightningModule,
    optimizer: Optimizer,
    clip_val: float | None,
    algorithm: str | GradClipAlgorithmType | None,
    rule: ClipRule | None = None,
) -> ClipReport:
    """Clip this step's gradients of ``module`` in place (see the module docstring); report what was done."""
    trainer = module.trainer
    step = upcoming_step(trainer)
    if rule is None and not clip_val:
        return ClipReport(step)
    stats = step_grad_norms(trainer, module)
    if not stats.grads():  # the guard skipped this step: nothing to clip, nothing for a rule to remember
        return ClipReport(step)
    if rule is not None:
        postclip_norm, metrics = rule(stats)
        return ClipReport(step, True, postclip_norm, metrics)
    assert clip_val is not None
    if _is_norm_clipping(algorithm) and _norm_clipping_is_lightnings(trainer, optimizer, stats):
        torch.nn.utils.clip_grads_with_norm_(stats.params, clip_val, stats.total_norm)
        return ClipReport(step, True, max_norm=float(clip_val))
    module.clip_gradients(optimizer, clip_val, algorithm)  # Lightning's own path (value, or its plugin's)
    return ClipReport(step, True)
