"""Where a benchmark runs (``--device cpu|cuda``): the device, its clock and its peak memory, in one place.

CUDA work is asynchronous: a host clock read without a synchronisation measures how fast kernels were queued,
not how fast they ran, so every clock read on CUDA synchronises first. Peak memory is the caching allocator's
``max_memory_allocated`` on CUDA (tensors only, not the allocator's reserve) and the process's peak resident set
size on the CPU (Linux ``VmHWM``, reset through ``/proc/self/clear_refs`` at the start of the timed window; the
whole process: interpreter, torch and every earlier run's leftovers included). None where neither exists.
Not a benchmark itself: modules of src/bench/ whose name starts with ``_`` are helpers.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import time
from pathlib import Path

import torch

DEVICES = ("cpu", "cuda")
_CLEAR_REFS, _STATUS = Path("/proc/self/clear_refs"), Path("/proc/self/status")


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
    elif _CLEAR_REFS.exists():
        with contextlib.suppress(OSError):
            _CLEAR_REFS.write_text("5")  # "5": reset the peak RSS to the current RSS (Linux >= 4.0)


def peak_memory_mib(device: torch.device) -> float | None:
    """Most memory held since the last reset, in MiB: tensors on CUDA, the process's resident set on the CPU
    (None where /proc/self/status has no VmHWM)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    with contextlib.suppress(OSError):
        found = re.search(r"^VmHWM:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
        if found:
            return int(found.group(1)) / 1024
    return None


def describe(device: torch.device) -> str:
    """The device as a table header names it: GPU model and CUDA version, or the CPU's thread count."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"cpu ({torch.get_num_threads()} threads), torch {torch.__version__}"
