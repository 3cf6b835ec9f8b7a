"""The analysis package's shared pieces: one number format, one table, one clip label, and its import order."""

from __future__ import annotations

import ast
from pathlib import Path

import lightning as L
import pytest

from src.analysis.formatting import clip_label, fmt, markdown_table
from src.train import train
from tests.conftest import REPO

# each module of src/analysis/ may import only the ones before it (src/analysis/__init__.py says the same)
LAYERS = [
    "criteria", "formatting", "published", "runs", "verdicts", "results", "claims", "claims_table", "plots", "compare",
    "diagnosis", "report",
]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [
        (None, 4, "–"),
        (0.123456, 4, "0.1235"),
        (2.0, 4, "2"),
        (3000, 4, "3000"),  # W&B stores a whole float as an int: both read the same
        (3000.0, 4, "3000"),
        (12345.0, 4, "12345"),
        (524288.0, 7, "5.242880e+05"),  # beyond 1e5: scientific, digits significant
        (3537892, 4, "3.538e+06"),
        (0.0007899, 4, "7.899e-04"),  # below 1e-3: scientific
        (0.0, 4, "0"),
        (float("inf"), 4, "inf"),
        (float("nan"), 4, "nan"),
        (True, 4, "True"),
        ("solves", 4, "solves"),
    ],
)
def test_one_number_format(value, digits, text):
    assert fmt(value, digits) == text


def test_one_markdown_table():
    table = markdown_table("a | b", [["1", "2"], ["3", "4"]])
    assert table == "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |"
    assert markdown_table(["a", "b"], [["1", "2"], ["3", "4"]]) == table


@pytest.mark.parametrize(
    ("clip", "rule", "algorithm", "label"),
    [
        (None, "none", "norm", "noclip"),
        (1.0, "none", "norm", "clip1.0"),
        (0.5, None, "value", "clipvalue0.5"),
        (None, "autoclip", "norm", "autoclip"),
    ],
)
def test_one_clip_label_names_the_run_tags_it_and_prints_it(make_cfg, clip, rule, algorithm, label):
    assert clip_label(clip, rule, algorithm) == label
    assert clip_label(clip, rule, algorithm, preset="penalty") == "penalty"  # a clip_preset names the setting
    overrides = [f"clip={'null' if clip is None else clip}", f"clip_algorithm={algorithm}"]
    if rule not in (None, "none"):
        overrides = [f"clipping={rule}"]
    cfg = make_cfg(*overrides)
    # the run name's resolver (conf/train.yaml) is the same function
    assert cfg.name.endswith(f"-{label}")


def test_analysis_modules_import_only_the_ones_below_them():
    for path in sorted((REPO / "src" / "analysis").glob("*.py")):
        if path.stem == "__init__":
            continue
        assert path.stem in LAYERS, f"{path.name} is not placed in the analysis layers"
        below = set(LAYERS[: LAYERS.index(path.stem)])
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module == "src.analysis":
                names = [f"src.analysis.{a.name}" for a in node.names]
            for name in names:
                if name.startswith("src.analysis."):
                    assert name.split(".")[2] in below, f"{path.name} imports {name}"
                if name.startswith("src.") and not name.startswith("src.analysis"):
                    assert name in ("src.environment", "src.reproduce"), f"{path.name} imports {name}"


class Totals(L.Callback):
    """A callback from another project reporting a total: the summary takes it through run_totals() alone."""

    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self.batches += 1

    def run_totals(self) -> dict[str, int]:
        return {"batches_seen": self.batches}


def test_any_callback_hands_its_totals_to_the_summary_through_run_totals(make_cfg):
    cfg = make_cfg("+callbacks.totals._target_=tests.test_analysis.Totals")
    summary = train(cfg)
    assert summary["batches_seen"] == summary["steps"] == 20
    assert "max_grad_norm" in summary and summary["status"] == "completed"  # GradNormMonitor's and the guard's
    assert '"batches_seen": 20' in Path(cfg.paths.output_dir, "summary.json").read_text()
