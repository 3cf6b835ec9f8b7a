"""One LightningDataModule for every synthetic task.

Training batches are drawn on the training device, one whole batch at a time, in ``on_after_batch_transfer``:
the DataLoader only yields a step counter, so no Python-per-sample Dataset and no host-to-device copy.
Each batch is made of ``shards_per_device`` independently seeded shards; shard ``k`` of rank ``r`` is
keyed by (seed, r·shards_per_device + k, batch counter). So ranks see different data (N ranks see N× the
samples per step), and one device with ``shards_per_device=N`` sees exactly the global batch of N devices
with one shard each. The counter is saved in checkpoints, so a resumed run continues the same stream.
Validation and test sets are fixed, generated once from ``val_seed`` (independent of ``seed``), so every
run of a comparison is scored on the same sequences.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from src.data.adding import AddingProblem
from src.data.copy_memory import CopyMemory
from src.data.recall import AssociativeRecall
from src.data.scalar import ScalarSignal
from src.data.task import Task, TaskGenerator
from src.data.temporal_order import TemporalOrder

# the step counter has a length so progress bars know the epoch size; it is never split across workers
warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")

TASKS = {
    "adding": AddingProblem,
    "copy": CopyMemory,
    "temporal_order": TemporalOrder,
    "recall": AssociativeRecall,
    "scalar": ScalarSignal,
}


def make_task(name: str, seq_len: int, x: float = 1.0) -> TaskGenerator:
    if name == "scalar":
        return ScalarSignal(x)
    return TASKS[name](seq_len)


def shard_seed(seed: int, shard: int, counter: int) -> int:
    """A distinct 63-bit seed for each (run seed, shard, batch) triple."""
    return (((seed * 1_000_003) ^ (shard * 998_244_353)) * 1_000_000_007 + counter) % (2**63 - 1)


class _StepCounter(IterableDataset):
    """Yields ``length`` step numbers per epoch; the batch itself is made on device from the number."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.length))

    def __len__(self) -> int:
        return self.length


class SyntheticDataModule(L.LightningDataModule):
    def __init__(
        self,
        task: str = "adding",
        seq_len: int = 50,
        batch_size: int = 64,
        shards_per_device: int = 1,
        batches_per_epoch: int = 100,
        val_size: int = 1024,
        test_size: int = 1024,
        eval_batch_size: int = 512,
        val_seed: int = 1234,
        seed: int = 0,
        x: float = 1.0,
        repeat_batches: int = 0,
        corrupt_every: int = 0,
        corrupt_scale: float = 1000.0,
    ) -> None:
        super().__init__()
        self.generator = make_task(getattr(task, "value", task), seq_len, x)
        self.task: Task = self.generator.task
        self.batch_size, self.shards_per_device = batch_size, shards_per_device
        self.batches_per_epoch, self.eval_batch_size = batches_per_epoch, eval_batch_size
        self.val_size, self.test_size, self.val_seed, self.seed = val_size, test_size, val_seed, seed
        self.repeat_batches = repeat_batches  # > 0: cycle through this many fixed batches (debug=overfit)
        # > 0: every corrupt_every-th training batch has its inputs multiplied by corrupt_scale — a "bad batch"
        # (PaLM, Chowdhery et al. 2022 §5.1: loss spikes traced to particular batches) for the guard's skip action
        self.corrupt_every, self.corrupt_scale = corrupt_every, corrupt_scale
        self.batches_drawn = 0
        self._rng: torch.Generator | None = None
        self._fixed: dict[str, TensorDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if not self._fixed:
            rng = torch.Generator().manual_seed(self.val_seed)
            for split, n in (("val", self.val_size), ("test", self.test_size)):
                self._fixed[split] = TensorDataset(*self.generator.sample(n, rng, torch.device("cpu")))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_StepCounter(self.batches_per_epoch), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._fixed["val"], batch_size=self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self._fixed["test"], batch_size=self.eval_batch_size)

    def draw_batch(self, device: torch.device, rank: int = 0) -> tuple[Tensor, Tensor]:
        """The next training batch of this rank, generated on ``device``."""
        if self._rng is None or self._rng.device != device:
            self._rng = torch.Generator(device=device)
        per_shard = self.batch_size // self.shards_per_device
        counter = self.batches_drawn % self.repeat_batches if self.repeat_batches else self.batches_drawn
        parts = []
        for k in range(self.shards_per_device):
            self._rng.manual_seed(shard_seed(self.seed, rank * self.shards_per_device + k, counter))
            parts.append(self.generator.sample(per_shard, self._rng, device))
        self.batches_drawn += 1
        xs, ys = zip(*parts, strict=True)
        x, y = (xs[0], ys[0]) if len(parts) == 1 else (torch.cat(xs), torch.cat(ys))
        if self.corrupt_every and self.batches_drawn % self.corrupt_every == 0:
            x = x * self.corrupt_scale
        return x, y

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, int):  # a training step counter: make the batch here, on the device
            return self.draw_batch(self.trainer.strategy.root_device, self.trainer.global_rank)
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"batches_drawn": self.batches_drawn}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.batches_drawn = int(state_dict["batches_drawn"])
