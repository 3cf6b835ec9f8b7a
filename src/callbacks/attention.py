"""AttentionMonitor: the largest attention logit and the attention entropy per layer, and the output-logit
scale, on logging steps only.

Attention logits that grow until the softmax saturates (entropy collapsing towards 0) are the instability of
Dehghani et al. (2023) and Wortsman et al. (2023, §3.1.1); output logits drifting off are the one z-loss
targets (§3.1.2). Fused attention (``F.scaled_dot_product_attention``) never materialises the logits, so the
monitor relies on a small protocol instead of reading them off the kernel:

    An *attention module* is any ``nn.Module`` with a boolean attribute ``record_attention``. While it is
    True, every forward pass also computes its attention logits explicitly and stores them, detached, in
    ``attention_logits``: a (B, H, T_query, T_key) tensor of QKᵀ/√d (plus any additive bias), −inf where a
    mask forbids attending. The module's output must not depend on the flag.

(src/models/transformer.py's ``SelfAttention`` is one.) The flags are set only during a logging step's
training forward pass, so other steps run the fused kernel alone; each layer's logits are reduced in a hook
as soon as that layer has run and then dropped, so at most one layer's (B, H, T, T) tensor is alive. A model
without attention modules costs nothing: the monitor does nothing at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from typing_extensions import override

from src.callbacks.schedule import ForwardRecorder


def attention_modules(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The attention modules of ``module`` (see the protocol above), in network order."""
    return [(name, m) for name, m in module.named_modules() if isinstance(getattr(m, "record_attention", None), bool)]


def logit_stats(logits: Tensor) -> tuple[Tensor, Tensor, int]:
    """(largest logit, summed attention entropy in nats, number of query rows) of one (…, T_q, T_k) tensor.

    Masked entries (−inf) get probability 0 and add nothing to the entropy; rows that are fully masked are
    not expected (every causal query sees at least itself).
    """
    logits = logits.float()
    p = logits.softmax(dim=-1)
    entropy = torch.special.entr(p).sum(dim=-1)  # (…, T_q): −Σ p ln p, with 0·ln 0 = 0
    return logits.max(), entropy.sum(), entropy.numel()


class _Running:
    """Max, sum and count merged over the micro-batches of one optimizer step, on device."""

    def __init__(self) -> None:
        self.max: Tensor | None = None
        self.sum: Tensor | None = None
        self.sum_sq: Tensor | None = None
        self.count = 0

    def add(self, max_value: Tensor, total: Tensor, count: int, total_sq: Tensor | None = None) -> None:
        self.max = max_value if self.max is None else torch.maximum(self.max, max_value)
        self.sum = total if self.sum is None else self.sum + total
        if total_sq is not None:
            self.sum_sq = total_sq if self.sum_sq is None else self.sum_sq + total_sq
        self.count += count


class AttentionMonitor(ForwardRecorder):
    """On the logging steps of ``src.callbacks.schedule`` (step 0 included) logs, from that step's training
    forward pass (every micro-batch of it):

    - ``attn/logit_max/<module>``: the largest attention logit of each attention module (over batch, heads and
      unmasked query-key pairs);
    - ``attn/entropy/<module>``: the mean entropy (nats) of its attention distributions (over batch, heads and
      queries); ln T_k is uniform attention, 0 a one-hot (saturated) softmax;
    - ``logits/max_abs`` and ``logits/std``: the scale of the LightningModule's forward output, the network's
      output logits (over every element).

    Args:
        every_n_steps: logging interval in optimizer steps; None uses the Trainer's ``log_every_n_steps``.

    Raises:
        ValueError: ``every_n_steps`` < 1.

    Only rank 0 records (activations are per rank; no collective is added). Under DDP the numbers are rank 0's
    share of the batch.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        super().__init__(every_n_steps)
        self._handles: list[RemovableHandle] = []
        self._modules: list[nn.Module] = []
        self._layers: dict[str, _Running] = {}
        self._output = _Running()

    def _layer_hook(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            logits = getattr(module, "attention_logits", None)
            if not module.record_attention or logits is None:
                return
            self._layers.setdefault(name, _Running()).add(*logit_stats(logits))
            module.attention_logits = None  # reduced: free the (B, H, T, T) tensor before the next layer runs

        return hook

    def _output_hook(self, module: nn.Module, args: Any, output: Any) -> None:
        if not self._modules or not self._modules[0].record_attention or not isinstance(output, Tensor):
            return
        out = output.detach().to(torch.float32 if output.device.type == "mps" else torch.float64)  # no f64 on MPS
        self._output.add(out.abs().max(), out.sum(), out.numel(), out.square().sum())

    @override
    def start(self, pl_module: L.LightningModule) -> bool:
        found = attention_modules(pl_module)
        if not found:
            return False  # no attention in this model: nothing to record
        self._layers, self._output = {}, _Running()
        self._modules = [m for _, m in found]
        self._handles = [m.register_forward_hook(self._layer_hook(n)) for n, m in found]
        self._handles.append(pl_module.register_forward_hook(self._output_hook))
        return True

    @override
    def record(self, flag: bool) -> None:
        for module in self._modules:
            module.record_attention = flag
            if not flag:
                module.attention_logits = None

    @override
    def stop(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._modules = [], []

    @override
    def collect(self) -> dict[str, Tensor | float]:
        metrics: dict[str, Tensor | float] = {}
        for name, layer in self._layers.items():
            if layer.max is not None and layer.sum is not None:
                metrics[f"attn/logit_max/{name}"] = layer.max
                metrics[f"attn/entropy/{name}"] = layer.sum / layer.count
        out = self._output
        if out.max is not None and out.sum is not None and out.sum_sq is not None and out.count > 1:
            mean = out.sum / out.count
            metrics["logits/max_abs"] = out.max
            # unbiased, as torch.std, from the float64 sums of every micro-batch
            metrics["logits/std"] = ((out.sum_sq - out.count * mean.square()) / (out.count - 1)).clamp_min(0).sqrt()
        self._layers, self._output = {}, _Running()
        return metrics
