"""A real in-memory Lightning logger, an independent gradient probe and a fit helper, for telemetry tests."""

from __future__ import annotations

from typing import Any

import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger

from src.build import build_network
from src.models import GradLabModule


class MemoryLogger(Logger):
    """Keeps every logged metric as {step: {key: value}}."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: dict[int, dict[str, float]] = {}

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.steps.setdefault(int(step or 0), {}).update(metrics)

    def series(self, key: str) -> dict[int, float]:
        return {s: m[key] for s, m in sorted(self.steps.items()) if key in m}


class GradientProbe(Callback):
    """Recomputes norms by another route: one torch.cat(...).norm() per module (``pre``) and per recurrent
    weight matrix with its bias (``recurrent``), per optimizer step."""

    def __init__(self) -> None:
        self.pre: dict[int, dict[str, float]] = {}
        self.recurrent: dict[int, dict[str, float]] = {}
        self.post: dict[int, float] = {}
        self._step: int | None = None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        step = trainer.global_step
        layers: dict[str, float] = {}
        matrices: dict[str, float] = {}
        for name, module in pl_module.named_modules():
            own = [(n, p) for n, p in module.named_parameters(recurse=False) if p.grad is not None]
            if own:
                layers[name] = torch.cat([p.grad.flatten() for _, p in own]).norm().item()
            if isinstance(module, torch.nn.RNNBase):
                for n, p in own:
                    if n.startswith("weight"):
                        bias = module.get_parameter(n.replace("weight", "bias"))
                        matrices[f"{name}.{n}"] = torch.cat([p.grad.flatten(), bias.grad.flatten()]).norm().item()
        every = torch.cat([p.grad.flatten() for p in pl_module.parameters() if p.grad is not None])
        layers["__total__"] = every.norm().item()
        self.pre[step] = layers
        self.recurrent[step] = matrices
        self._step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._step is None:
            return
        every = torch.cat([p.grad.flatten() for p in pl_module.parameters() if p.grad is not None])
        self.post[self._step] = every.norm().item()
        self._step = None


def fit(make_cfg, overrides, callbacks, **trainer_kwargs):
    """Train the composed config with these callbacks and a MemoryLogger: (logger, trainer, module)."""
    cfg = make_cfg(*overrides)
    dm = instantiate(cfg.data)
    module = GradLabModule(build_network(cfg.model, dm.task), dm.task, instantiate(cfg.optimizer))
    logger = MemoryLogger()
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger, **trainer_kwargs)
    trainer.fit(module, datamodule=dm)
    return logger, trainer, module
