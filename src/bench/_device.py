"""Where a benchmark runs (``--device cpu|cuda``): the device, its clock and its peak memory, in one place.

CUDA work is asynchronous: a host clock read without a synchronisation measures how fast kernels were queued,
not how fast they ran, so every clock read on CUDA synchronises first. Peak memory is the caching allocator's
``max_memory_allocated`` (tensors only, not the allocator's reserve); the CPU has no such counter (None).
Not a benchmark itself: modules of src/bench/ whose name starts with ``_`` are helpers.
"""

from __future__ import annotations

import argparse
import time

import torch

DEVICES = ("cpu", "cuda")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", choices=DEVICES, help="where the timed runs train (default cpu)")


def bench_device(parser: argparse.ArgumentParser, name: str) -> torch.device:
    """The device ``--device`` names; a CUDA request without a visible GPU is a usage error (exit 2)."""
    if name != "cuda":
        return torch.device(name)
    if not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible (torch.cuda.is_available() is False)")
    return torch.device("cuda", torch.cuda.current_device())  # with its index: equal to tensors' .device


def accelerator(device: torch.device) -> str:
    """Lightning's name for the device type (``Trainer(accelerator=...)``, ``trainer.accelerator=...``)."""
    return "gpu" if device.type == "cuda" else "cpu"


def clock(device: torch.device) -> float:
    """Wall-clock seconds, after every kernel queued on ``device`` has finished."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float | None:
    """Most memory held by tensors on ``device`` since the last reset, in MiB (None on the CPU)."""
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def describe(device: torch.device) -> str:
    """The device as a table header names it: GPU model and CUDA version, or the CPU's thread count."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"cpu ({torch.get_num_threads()} threads), torch {torch.__version__}"
