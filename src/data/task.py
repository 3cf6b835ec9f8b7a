"""What every synthetic task tells the rest of gradlab: shapes, loss, trivial baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor

# final: one prediction per sequence (from the last step); per_step: one class per time step;
# none: not a sequence at all (the scalar chain).
OutputKind = Literal["final", "per_step", "none"]
LossKind = Literal["mse", "cross_entropy", "output"]


@dataclass(frozen=True)
class Task:
    name: str
    input_size: int  # features per time step
    output_size: int  # regression targets or number of classes
    seq_len: int  # time steps of the input (1 for non-sequence tasks)
    output: OutputKind
    loss: LossKind
    baseline: float  # expected loss of the task's trivial strategy (named in `baseline_rule`)
    baseline_rule: str
    # per_step tasks: the last `answer_steps` positions hold the answer (copy: the 10 recalled symbols);
    # accuracy and exact match are scored there only. 0: every position.
    answer_steps: int = 0

    @property
    def is_classification(self) -> bool:
        return self.loss == "cross_entropy"


class TaskGenerator(Protocol):
    """A task draws ``n`` fresh (x, y) pairs directly on ``device`` from ``generator``."""

    task: Task

    def sample(self, n: int, generator: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor]: ...
