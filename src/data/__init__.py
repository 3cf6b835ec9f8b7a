from src.data.datamodule import TASKS, SyntheticDataModule, make_task
from src.data.task import Task, TaskGenerator

__all__ = ["TASKS", "SyntheticDataModule", "Task", "TaskGenerator", "make_task"]
