"""The smallest LightningModule a real Trainer can fit, for tests of the loop's bookkeeping."""

from __future__ import annotations

import lightning as L
import torch


class Tiny(L.LightningModule):
    """A 2 -> 1 linear regression under SGD."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)
