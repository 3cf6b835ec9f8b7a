"""The synthetic tasks and their LightningDataModule.

Each name is imported from its module on first use (PEP 562): a config check that reads a task need not
import Lightning, which only the DataModule needs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from src.data.datamodule import TASKS, SyntheticDataModule, make_task
    from src.data.task import Task, TaskGenerator

_MODULE_OF = {"TASKS": "datamodule", "SyntheticDataModule": "datamodule", "make_task": "datamodule", "Task": "task",
              "TaskGenerator": "task"}  # fmt: skip
__all__ = ["TASKS", "SyntheticDataModule", "Task", "TaskGenerator", "make_task"]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
