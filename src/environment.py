"""The hardware and software a run ran on, as flat config keys W&B can group and filter by."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import lightning as L
import torch


def cpu_name() -> str:
    """The CPU model (Linux's /proc/cpuinfo); elsewhere what ``platform`` knows, often only the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_environment(trainer: L.Trainer) -> dict[str, Any]:
    """Keys describe this process's view; under DDP every rank sees the same, and only rank 0 logs them."""
    cluster = getattr(trainer.strategy, "cluster_environment", None)
    accelerator = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    device = trainer.strategy.root_device
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {
        "accelerator": accelerator,
        "device_name": device_name,
        "device_count": trainer.num_devices,
        "num_nodes": trainer.num_nodes,
        "world_size": trainer.world_size,
        "strategy": type(trainer.strategy).__name__,
        # how the ranks were started: LightningEnvironment (its own launcher), SLURMEnvironment (srun), ...
        "cluster_environment": type(cluster).__name__ if cluster is not None else None,
        "precision": str(trainer.precision),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
