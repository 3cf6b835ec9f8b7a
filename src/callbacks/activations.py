"""ActivationMonitor: per-layer activation mean/std and backward δ norms, on logging steps only.

δ_l = ∂L/∂(output of layer l) is the seed article's "δ at each layer": through a stack of layers it grows
geometrically towards the input when the layers' Jacobians have norm > 1 (16, 8, 4, 2, 1 for the scalar
chain with w = 2) and shrinks when they are < 1. The activation statistics show what BatchNorm/LayerNorm
change (Ioffe & Szegedy 2015; Ba et al. 2016).

Forward hooks (and the tensor hooks they put on the outputs to catch δ) exist only while a logging step's
micro-batches run, and record only between ``on_train_batch_start`` and ``on_after_backward``: an extra
forward pass made later by another callback (ThroughTimeMonitor's diagnostic pass) is not counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from typing_extensions import override

from src.callbacks.schedule import ForwardRecorder, loss_scale
from src.grad_norms import layer_index, squared_norm


class _Moments:
    """Count, mean and sum of squared deviations of every value a layer output, merged over calls.

    Chan, Golub & LeVeque (1979) pairwise update: exact over micro-batches and repeated calls, on device.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None
        self.delta_sq: Tensor | None = None  # Σ ||δ||² over the calls' outputs

    def add_output(self, values: Tensor) -> None:
        n = values.numel()
        mean = values.mean()
        m2 = torch.linalg.vector_norm(values - mean).square()  # one temporary: the deviations
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        diff = mean - self.mean
        self.mean = self.mean + diff * (n / total)
        self.m2 = self.m2 + m2 + diff.square() * (self.count * n / total)
        self.count = total

    def add_delta(self, grad: Tensor) -> None:
        sq = squared_norm(grad)
        self.delta_sq = sq if self.delta_sq is None else self.delta_sq + sq


class ActivationMonitor(ForwardRecorder):
    """On the logging steps of ``src.callbacks.schedule`` (step 0 included) logs, for every layer
    (src/grad_norms.py: a module that owns parameters, the names of ``grad/layer/...``; its first output if
    it returns a tuple, e.g. an RNN's sequence):

    - ``act/mean/<name>`` and ``act/std/<name>``: over all values of the output (std unbiased, as torch.std);
    - ``delta/layer/<name>``: ||∂L/∂output||, the backward signal reaching that layer.

    Args:
        every_n_steps: logging interval in optimizer steps; None uses the Trainer's ``log_every_n_steps``.

    Raises:
        ValueError: ``every_n_steps`` < 1.

    Under gradient accumulation the statistics cover every micro-batch of the step: δ's are those of the loss
    Lightning back-propagates (divided by the number of micro-batches), so their combined norm equals the δ
    of one batch of the same total size. Under AMP the δ's are divided by the GradScaler's scale. Under DDP
    the numbers are rank 0's share of the batch (activations are local; no collective is added).
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        super().__init__(every_n_steps)
        self._handles: list[RemovableHandle] = []
        self._moments: dict[str, _Moments] = {}
        self._recording = False
        self._scale: Tensor | None = None

    def _forward_hook(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            if not self._recording or not isinstance(out, Tensor) or not out.is_floating_point():
                return
            moments = self._moments.setdefault(name, _Moments())
            moments.add_output(out.detach().float())
            if out.requires_grad:
                out.register_hook(moments.add_delta)

        return hook

    @override
    def start(self, pl_module: L.LightningModule) -> bool:
        self._moments = {}
        self._handles = [
            layer.module.register_forward_hook(self._forward_hook(layer.name))
            for layer in layer_index(pl_module).layers
        ]
        return True

    @override
    def record(self, flag: bool) -> None:
        self._recording = flag

    @override
    def stop(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @override
    def before_update(self, trainer: L.Trainer) -> None:
        scale = loss_scale(trainer)  # the scale this step's backward used (the scaler updates it after the step)
        self._scale = None if scale is None else scale.detach().clone()

    @override
    def collect(self) -> dict[str, Tensor | float]:
        scale, self._scale = self._scale, None
        metrics: dict[str, Tensor | float] = {}
        for name, m in self._moments.items():
            if m.mean is None or m.m2 is None:
                continue
            metrics[f"act/mean/{name}"] = m.mean
            metrics[f"act/std/{name}"] = (m.m2 / max(m.count - 1, 1)).sqrt()
            if m.delta_sq is not None:
                delta = m.delta_sq.sqrt()
                metrics[f"delta/layer/{name}"] = delta / scale if scale is not None else delta
        self._moments = {}
        return metrics
