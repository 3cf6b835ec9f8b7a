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
from src.grad_norms import step_grad_norms


@dataclass(frozen=True)
class ClipReport:
    """What clipping did to the gradients of one optimizer step.

    ``rewritten``: the gradients were rescaled in place (False: they are the pre-clip ones, post = pre).
    ``postclip_norm``: their total 2-norm afterwards when known without another pass; None after a rewrite
    means "not derived" (value clipping): a monitor that needs it measures the gradients.
    ``metrics``: what a rule reports (``clip/threshold``, ``clip/scale``, ...), 0-d tensors logged as they are.
    """

    step: int
    rewritten: bool = False
    postclip_norm: Tensor | None = None
    metrics: Mapping[str, Tensor] = field(default_factory=dict)


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


def _norm_clipping_is_lightnings(trainer: L.Trainer, optimizer: Optimizer, params: list[Tensor]) -> bool:
    """Whether Lightning's norm clipping would be ``clip_grad_norm_`` over exactly ``params``."""
    plugin = trainer.precision_plugin
    if type(plugin).clip_grad_by_norm is not Precision.clip_grad_by_norm:  # FSDP, DeepSpeed, ... clip their way
        return False
    if getattr(optimizer, "_step_supports_amp_scaling", False):  # fused: Lightning refuses to clip under AMP
        return False
    clipped = {id(p) for p in plugin.main_params(optimizer) if p.grad is not None}
    return clipped == {id(p) for p in params if p.grad is not None}


def clip_gradients(
    module: L.LightningModule,
    optimizer: Optimizer,
    clip_val: float | None,
    algorithm: str | GradClipAlgorithmType | None,
    rule: ClipRule | None = None,
) -> ClipReport:
    """Clip this step's gradients of ``module`` in place (see the module docstring); report what was done."""
    trainer = module.trainer
    step = trainer.global_step
    if rule is None and not clip_val:
        return ClipReport(step)
    stats = step_grad_norms(trainer, module)
    if not stats.grads():  # the guard skipped this step: nothing to clip, nothing for a rule to remember
        return ClipReport(step)
    if rule is not None:
        postclip_norm, metrics = rule(stats)
        return ClipReport(step, True, postclip_norm, metrics)
    assert clip_val is not None
    if GradClipAlgorithmType(algorithm or "norm") == GradClipAlgorithmType.NORM and _norm_clipping_is_lightnings(
        trainer, optimizer, stats.params
    ):
        torch.nn.utils.clip_grads_with_norm_(stats.params, clip_val, stats.total_norm)
        # the coefficient clip_grads_with_norm_ multiplied every gradient by
        coef = torch.clamp(clip_val / (stats.total_norm + 1e-6), max=1.0)
        return ClipReport(step, True, stats.total_norm * coef)
    module.clip_gradients(optimizer, clip_val, algorithm)  # Lightning's own path (value, or its plugin's)
    return ClipReport(step, True)
