"""Where per-layer gradient norms are computed: what a layer is, and the one fused norm everything shares.

A *layer* is a module that owns trainable parameters, in registration (network) order, named by its module
path (``network.blocks.0.linear``, ``network.rnn``, ``network.head``): the same names under ``grad/``,
``weight/``, ``update_ratio/``, ``act/`` and ``delta/``. A recurrent module is one layer; its weight matrices
(``network.rnn.weight_ih_l0``, ``network.rnn.weight_hh_l0``, each with its bias) are also measured on their
own, because the recurrent matrix is the one whose norm tells exploding from vanishing (``.../recurrent/...``).

Every norm here is one ``torch._foreach_norm`` launch over a list of tensors with fp32 accumulation (fp16
gradients overflow to inf without it), summed into layers on device: no host synchronisation. The step's
gradient norms are computed once (``step_grad_norms``) and shared by GradNormMonitor, DivergenceGuard, the
flight recorder and the clipping in ``src/clipping/apply.py``, so no gradient is read twice in a step. The
total is taken as ``torch.nn.utils.get_total_norm`` takes it (the 2-norm of the per-tensor norms), so
clipping with it is bit-identical to Lightning's ``clip_grad_norm_``.
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor, nn

from src.steps import upcoming_step

_RNN_BIAS = re.compile(r"^bias_(ih|hh)_(l\d+(?:_reverse)?)$")


@dataclass(frozen=True)
class Layer:
    """A module that owns trainable parameters: its path name, the module and those parameters."""

    name: str
    module: nn.Module
    params: tuple[nn.Parameter, ...]


def _recurrent_matrices(prefix: str, module: nn.RNNBase) -> list[tuple[str, tuple[nn.Parameter, ...]]]:
    """``(<prefix>weight_ih_l0, (weight, bias)), ...``: each weight matrix of a recurrent module with its bias."""
    groups: dict[str, list[nn.Parameter]] = {}
    for name, p in module.named_parameters(recurse=False):
        if p.requires_grad:
            bias = _RNN_BIAS.match(name)
            groups.setdefault(f"weight_{bias.group(1)}_{bias.group(2)}" if bias else name, []).append(p)
    return [(prefix + key, tuple(params)) for key, params in groups.items()]


def layers(module: nn.Module) -> list[Layer]:
    """The layers of ``module`` in network order (see the module docstring)."""
    found = []
    for name, mod in module.named_modules():
        own = tuple(p for p in mod.parameters(recurse=False) if p.requires_grad)
        if own:
            found.append(Layer(name or "root", mod, own))
    return found


def fused_norms(tensors: Sequence[Tensor]) -> Tensor:
    """(N,) the 2-norm of each tensor, fp32-accumulated, in one fused launch; an empty (0,) without tensors."""
    if not tensors:
        return torch.zeros(0)
    return torch.stack(torch._foreach_norm([t.detach() for t in tensors], 2.0, dtype=torch.float32))


def all_finite(tensors: Sequence[Tensor]) -> bool:
    """No NaN/inf anywhere in ``tensors`` (a non-finite entry makes its tensor's norm non-finite); one host read."""
    return bool(torch.isfinite(fused_norms(tensors)).all())


def squared_norm(t: Tensor) -> Tensor:
    """Σ t², a float64 tensor (float32 on MPS, which has no float64).

    In float32, entries below ~1e-19 square to 0, and vanishing profiles (||dL/dh_t|| through 100 tanh
    steps, δ deep in a contracting stack) go far below that: the sum is accumulated in float64. On the CPU,
    where that path is not vectorised (several times slower than the float32 norm), a float32 tensor is
    measured in float32 first, and that norm is kept when it shows that no entry overflowed and that the
    entries lost to underflow could not change it beyond 1e-12 relative; it then carries float32's
    accumulated rounding (~1e-6 relative on 2e5 entries, as the per-step ``_foreach_norm``). Reading it is a
    plain read on the CPU; a device would have to synchronise, so it takes the float64 path at once. For
    diagnostics on logging steps.
    """
    t = t.detach()
    if t.is_cpu and t.dtype == torch.float32:
        fast = torch.linalg.vector_norm(t)
        # an entry below 1.1e-19 squares to below float32's smallest normal: n of them change the sum by at
        # most n * 1.2e-38, under 1e-12 of it when the norm exceeds sqrt(n) * 1.1e-13
        if _SAFE_NORM * math.sqrt(t.numel()) <= fast.item() < math.inf:
            return fast.double().square()
    dtype = torch.float32 if t.device.type == "mps" else torch.float64
    return torch.linalg.vector_norm(t, dtype=dtype).square()  # cast inside the kernel: no float64 copy


_SAFE_NORM = 1.1e-13


# Registering a parameter or a submodule anywhere (attribute assignment included) bumps this counter, so a
# cached index notices a model that changed shape without walking the module tree on every step. Deleting a
# submodule fires no hook and is not noticed. The hooks are process-wide (torch has no per-module ones), so
# they are registered the first time an index is built, never on import.
_STRUCTURE_VERSION = [0]
_HOOKS: list[object] = []


def _structure_changed(*args: object) -> None:
    _STRUCTURE_VERSION[0] += 1


def _watch_structure() -> None:
    if not _HOOKS:
        _HOOKS.append(torch.nn.modules.module.register_module_parameter_registration_hook(_structure_changed))
        _HOOKS.append(torch.nn.modules.module.register_module_module_registration_hook(_structure_changed))


class LayerIndex:
    """The layers of a module as flat lists (parameters, their layer, their recurrent matrix), cached."""

    def __init__(self, module: nn.Module) -> None:
        self.layers = layers(module)
        self.names = [layer.name for layer in self.layers]
        self.params = [p for layer in self.layers for p in layer.params]
        layer_of = [i for i, layer in enumerate(self.layers) for _ in layer.params]
        position = {id(p): i for i, p in enumerate(self.params)}
        self.recurrent = [
            group
            for layer in self.layers
            if isinstance(layer.module, nn.RNNBase)
            for group in _recurrent_matrices(layer.name + ".", layer.module)
        ]
        self.recurrent_names = [name for name, _ in self.recurrent]
        recurrent_of = [(position[id(p)], i) for i, (_, params) in enumerate(self.recurrent) for p in params]
        self._layer_of = torch.tensor(layer_of, dtype=torch.long)
        self._recurrent_pos = torch.tensor([pos for pos, _ in recurrent_of], dtype=torch.long)
        self._recurrent_of = torch.tensor([i for _, i in recurrent_of], dtype=torch.long)
        self.version = _STRUCTURE_VERSION[0]
        # (un)freezing changes which parameters count: layers() keeps requires_grad ones only
        self.all_params = list(module.parameters())
        self.requires_grad = [p.requires_grad for p in self.all_params]
        self._on: dict[torch.device, tuple[Tensor, Tensor, Tensor]] = {}

    def is_current(self) -> bool:
        if self.version != _STRUCTURE_VERSION[0]:
            return False
        return all(p.requires_grad is flag for p, flag in zip(self.all_params, self.requires_grad, strict=True))

    def _ids(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        if device not in self._on:
            self._on[device] = (
                self._layer_of.to(device),
                self._recurrent_pos.to(device),
                self._recurrent_of.to(device),
            )
        return self._on[device]

    def group(self, norms: Tensor) -> tuple[Tensor, Tensor]:
        """(L,) per-layer and (R,) per-recurrent-matrix 2-norms from ``norms``, one per parameter (P,)."""
        layer_of, recurrent_pos, recurrent_of = self._ids(norms.device)
        squares = norms.square()
        per_layer = torch.zeros(len(self.names), dtype=norms.dtype, device=norms.device)
        per_layer.index_add_(0, layer_of, squares)
        per_matrix = torch.zeros(len(self.recurrent_names), dtype=norms.dtype, device=norms.device)
        if self.recurrent_names:
            per_matrix.index_add_(0, recurrent_of, squares.index_select(0, recurrent_pos))
        return per_layer.sqrt(), per_matrix.sqrt()


_INDEX: weakref.WeakKeyDictionary[nn.Module, LayerIndex] = weakref.WeakKeyDictionary()


def layer_index(module: nn.Module) -> LayerIndex:
    """The cached index of ``module``, rebuilt when a parameter or submodule was added or (un)frozen."""
    _watch_structure()
    index = _INDEX.get(module)
    if index is None or not index.is_current():
        index = _INDEX[module] = LayerIndex(module)
    return index


def layer_norms(module: nn.Module, tensors: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-layer and per-recurrent-matrix norms of one tensor per parameter of ``layer_index(module).params``
    (the weights themselves, their updates, ...)."""
    return layer_index(module).group(fused_norms(tensors))


@dataclass
class GradStats:
    """Pre-clip gradient norms of one optimizer step (all tensors fp32, on the gradients' device).

    The per-layer and per-matrix norms are summed from the per-parameter ones when first read (a logging
    step, a rule that clips by layer, a divergence's diagnosis), so a step nobody reads them on costs only
    the fused norm and the total.
    """

    step: int
    index: LayerIndex
    param_norms: Tensor  # (P,) 2-norm of each parameter's gradient (index.params order); 0 without a gradient
    total_norm: Tensor  # () 2-norm over every gradient: what norm clipping compares to its threshold

    @cached_property
    def _grouped(self) -> tuple[Tensor, Tensor]:
        return self.index.group(self.param_norms)

    @property
    def layer_norms(self) -> Tensor:
        """(L,) 2-norm of each layer's gradient; 0 for layers without a gradient."""
        return self._grouped[0]

    @property
    def recurrent_norms(self) -> Tensor:
        """(R,) 2-norm of each recurrent weight matrix's gradient (with its bias)."""
        return self._grouped[1]

    @property
    def layer_names(self) -> list[str]:
        return self.index.names

    @property
    def params(self) -> list[nn.Parameter]:
        """The parameters measured, in layer order."""
        return self.index.params

    def grads(self) -> list[Tensor]:
        """The gradients measured (parameters without one are left out)."""
        return [p.grad for p in self.index.params if p.grad is not None]

    def as_dict(self, kind: str = "grad") -> dict[str, Tensor]:
        """``<kind>/layer/<name>`` and ``<kind>/recurrent/<matrix>``: every norm under its metric key."""
        out = {f"{kind}/layer/{n}": v for n, v in zip(self.index.names, self.layer_norms.unbind(0), strict=True)}
        for name, value in zip(self.index.recurrent_names, self.recurrent_norms.unbind(0), strict=True):
            out[f"{kind}/recurrent/{name}"] = value
        return out


def grad_norms(module: nn.Module, step: int = -1) -> GradStats:
    """Per-layer and total 2-norms of the current ``.grad`` tensors of ``module``, without a host sync."""
    index = layer_index(module)
    grads = [p.grad for p in index.params]
    present = [g for g in grads if g is not None]
    if not present:
        zero = torch.zeros(len(grads))
        return GradStats(step, index, zero, zero.sum())
    norms = fused_norms(present)  # (P,) one fused launch
    total = torch.linalg.vector_norm(norms)  # as torch.nn.utils.get_total_norm
    if len(present) < len(grads):  # parameters without a gradient count as 0 in their layer
        full = torch.zeros(len(grads), dtype=norms.dtype, device=norms.device)
        full[[i for i, g in enumerate(grads) if g is not None]] = norms
        norms = full
    return GradStats(step, index, norms, total)


Versions = tuple[tuple[int, int], ...]


def grad_versions(params: Sequence[nn.Parameter]) -> Versions:
    """(id, version counter) of each parameter's gradient; (0, -1) where there is none.

    Every in-place write bumps a tensor's version counter, so equal versions mean untouched gradients.
    """
    return tuple((id(g), g._version) if (g := p.grad) is not None else (0, -1) for p in params)


_STEP: weakref.WeakKeyDictionary[object, tuple[tuple[int, Versions], GradStats]] = weakref.WeakKeyDictionary()


def step_grad_norms(trainer: object, module: nn.Module) -> GradStats:
    """The step's pre-clip gradient norms: computed by the first caller, shared with every later one.

    Call it between backward and the optimizer update (``on_before_optimizer_step``,
    ``configure_gradient_clipping``). Cached per trainer, for the current optimizer step (``src.steps``) and
    gradients: a gradient written to (or removed) since is measured again. The model's structure is checked
    (``layer_index``) by the step's first caller; the later ones compare the gradients' versions only.
    """
    step = upcoming_step(trainer)
    cached = _STEP.get(trainer)
    if cached is not None:
        (cached_step, versions), stats = cached
        if cached_step == step and stats.index is _INDEX.get(module) and grad_versions(stats.params) == versions:
            return stats
    stats = grad_norms(module, step)
    _STEP[trainer] = ((step, grad_versions(stats.params)), stats)
    return stats
