"""The hardware and software a run ran on, as flat config keys W&B can group and filter by."""

from __future__ import annotations

import platform
from typing import Any

import lightning as L
import torch


def run_environment(trainer: L.Trainer) -> dict[str, Any]:
    accelerator = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    device = trainer.strategy.root_device
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = platform.processor() or platform.machine()
    return {
        "accelerator": accelerator,
        "device_name": device_name,
        "device_count": trainer.num_devices,
        "num_nodes": trainer.num_nodes,
        "world_size": trainer.world_size,
        "strategy": type(trainer.strategy).__name__,
        "precision": str(trainer.precision),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
