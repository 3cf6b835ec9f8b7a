"""One small training run with every monitor, for tests/test_telemetry_ddp.py.

    python -m tests.ddp_telemetry_run OUT_DIR ddp      # 2 CPU processes (gloo), 4 samples per rank
    python -m tests.ddp_telemetry_run OUT_DIR single   # 1 process, 8 samples: the same global batch

Rank 0 writes what the loggers received to OUT_DIR/logged.json; every rank writes the pre-clip norms it
computed to OUT_DIR/rank<r>.json. Lightning's own launcher starts the second process (it re-runs this
command), so the module has to be run with ``-m`` from the repository root.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from src.callbacks import ActivationMonitor, GradNormMonitor, HistogramMonitor, ThroughTimeMonitor, WeightMonitor
from src.grad_norms import step_grad_norms
from tests.telemetry_helpers import MemoryLogger


class SequenceModel(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.RNN(3, 16, num_layers=2, batch_first=True)
        self.head = nn.Linear(16, 1)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.head(self.rnn(x)[0][:, -1]), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader:
        # rank r of w reads samples r, r + w, ... in order, batches of 8 / w: batch k of all ranks together is
        # exactly the single process's batch k (Lightning's own DistributedSampler would shuffle)
        g = torch.Generator().manual_seed(1)
        x = torch.randn(64, 10, 3, generator=g)
        data = TensorDataset(x, x.mean((1, 2)).unsqueeze(1))
        rank, world = self.trainer.global_rank, self.trainer.world_size
        return DataLoader(Subset(data, range(rank, len(data), world)), batch_size=8 // world)


class RankNorms(L.Callback):
    """The pre-clip norms as each rank sees them (they must be identical: DDP all-reduced the gradients)."""

    def __init__(self) -> None:
        self.norms: dict[int, list[float]] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        stats = step_grad_norms(trainer, pl_module)
        self.norms[trainer.global_step] = [stats.total_norm.item(), *stats.layer_norms.tolist()]


def main(out: Path, mode: str) -> None:
    ddp = mode == "ddp"
    logger, ranks = MemoryLogger(), RankNorms()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2 if ddp else 1,
        strategy="ddp" if ddp else "auto",
        max_steps=4,
        use_distributed_sampler=False,
        log_every_n_steps=2,
        accumulate_grad_batches=2,
        gradient_clip_val=0.1,
        logger=logger,
        callbacks=[
            ranks,
            GradNormMonitor(every_n_steps=1),
            WeightMonitor(),
            ActivationMonitor(),
            ThroughTimeMonitor(),
            HistogramMonitor(),
        ],
        default_root_dir=out,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(SequenceModel())
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(ranks.norms))
    if trainer.is_global_zero:
        (out / "logged.json").write_text(json.dumps(logger.steps))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
