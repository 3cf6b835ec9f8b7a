"""Metrics that mean what they say, and one definition of "beats" and "solves" everywhere it is shown."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from src.analysis import criteria
from src.console import print_run_summary
from src.data import SyntheticDataModule
from src.data.copy_memory import BLANK, N_COPY
from src.models import GradLabModule


class Memoryless(nn.Module):
    """Copy memory's memoryless strategy: blank until the recall window, then the same guess at every position."""

    sequence_model = True

    def __init__(self, seq_len: int, classes: int = 9) -> None:
        super().__init__()
        self.seq_len, self.classes = seq_len, classes

    def forward(self, x: Tensor) -> Tensor:
        logits = torch.full((x.shape[0], x.shape[1], self.classes), -100.0)
        logits[:, :-N_COPY, BLANK] = 100.0
        logits[:, -N_COPY:, 1:] = 0.0  # uniform over the 8 symbols; argmax picks symbol 1
        return logits


class Constant(nn.Module):
    """Always the same class: temporal order's guess."""

    sequence_model = True

    def forward(self, x: Tensor) -> Tensor:
        return torch.tensor([5.0, 0.0, 0.0, 0.0]).expand(x.shape[0], 4)


def evaluate(task: str, seq_len: int, network: nn.Module) -> dict[str, float]:
    data = SyntheticDataModule(task=task, seq_len=seq_len, val_size=2048)
    data.setup()
    module = GradLabModule(network, data.task, optimizer=torch.optim.SGD)
    for batch in data.val_dataloader():
        module._common_step(batch, "val")
    return {k: float(v) for k, v in module.val_metrics.compute().items()}


def test_copy_accuracy_is_scored_on_the_recalled_symbols_only():
    values = evaluate("copy", 50, Memoryless(50))
    # the memoryless strategy: baseline loss, chance accuracy (1/8) on the recall, no sequence exactly right;
    # over all T+20 positions it would have scored (T + 10 + 10/8)/(T + 20) = 0.875
    assert values["val/loss"] == pytest.approx(10 * math.log(8) / 70, rel=1e-4)
    assert values["val/acc"] == pytest.approx(1 / 8, abs=0.01)  # 20480 recalled symbols
    assert values["val/exact_match"] == 0.0


def test_temporal_order_accuracy_of_a_constant_guess_is_chance():
    values = evaluate("temporal_order", 30, Constant())
    assert values["val/acc"] == pytest.approx(0.25, abs=0.03)
    assert "val/exact_match" not in values  # one answer per sequence: accuracy says it all


@pytest.mark.parametrize(
    ("ratio", "label", "beats", "solves"),
    [
        (0.92, "no", False, False),
        (0.89, "beats", True, False),
        (0.099, "solves", True, True),
        (1.3, "no", False, False),
    ],
)
def test_one_definition_of_beats_and_solves(ratio, label, beats, solves, capsys):
    baseline = 1 / 6
    loss = ratio * baseline
    assert criteria.beats(loss, baseline) is beats and criteria.solves(loss, baseline) is solves
    assert criteria.label(loss, baseline) == label
    summary = {
        "status": "completed", "name": "r", "clip": 1.0, "clip_algorithm": "norm", "clipping": "none", "steps": 10,
        "wall_time_s": 1.0, "metrics": {"val/loss": loss}, "baseline": baseline, "baseline_rule": "rule",
        "run_dir": "d", "beats_baseline": beats,
    }  # fmt: skip
    print_run_summary(summary)
    out = capsys.readouterr().out
    assert (("does NOT beat it" in out) is not beats) and (("solves it" in out) is solves)


def test_steps_to_solve_is_the_first_solving_validation():
    curve = [(100, 0.16), (200, 0.02), (300, 0.01), (400, 0.03)]
    assert criteria.steps_to_solve(curve, 1 / 6) == 300
    assert criteria.steps_to_solve(curve[:2], 1 / 6) is None
    assert criteria.vs_baseline(0.1, float("nan")) is None and criteria.label(0.1, None) == "n/a"
