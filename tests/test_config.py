"""Bad input fails before anything is written, with one line naming the key and what is allowed."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra.utils import instantiate

from src.config.preflight import check
from src.config.validate import ConfigError
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model=foo"], "model=foo is not a known option; expected one of: chain, gru, irnn, lstm, mlp"),
        (
            ["data=foo"],
            "data=foo is not a known option; expected one of: adding, copy, recall, scalar, temporal_order",
        ),
        (["clip=-1"], "clip=-1.0 is not allowed; expected a number > 0, or null for no clipping"),
        (["clip=0"], "clip=0.0 is not allowed"),
        (["clip=abc"], "clip=abc is not allowed; expected a number > 0, or null for no clipping"),
        (["data.seq_len=abc"], "data.seq_len=abc is not allowed; expected an integer"),
        (["clip_algorithm=foo"], "clip_algorithm=foo is not allowed; expected one of [norm, value]"),
        (["+foo=1"], "foo is not a known top-level key; expected one of: callbacks, ckpt_path, clip"),
        (["data.seq_len=0"], "data.seq_len=0 is not allowed; expected an integer >= 2"),
        (["model=mlp", "model.depth=0"], "model.depth=0 is not allowed; expected an integer >= 1"),
        (["model.hiden_size=3"], "model.hiden_size is not a known key (did you mean model.hidden_size?)"),
        (["trainer.max_step=5"], "trainer.max_step is not a known key (did you mean trainer.max_steps?)"),
        (
            ["+trainer.max_step=5"],
            "trainer.max_step is not a key of lightning.pytorch.Trainer; expected one of:",
        ),
        (["model=mlp", "model.activation=foo"], "model.activation=foo is not allowed; expected one of [relu"),
        (["model=chain"], "data=adding is not allowed with model=chain; expected data=scalar"),
        (["model=mlp", "data=copy"], "data=copy is not allowed with a feed-forward model"),
        (["-m", "clip=1.0,-2"], "clip=-2.0 is not allowed"),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], expected: str):
    with pytest.raises(ConfigError) as err:
        check(args)
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_good_input_passes():
    check(["model=rnn", "clip=1.0"])
    check(["model=mlp", "model.norm=layernorm", "clip=null", "clip_algorithm=value"])
    check(["-m", "model=rnn,lstm", "clip=null,1.0"])


# one of each kind of check; tests/test_preflight.py shows that no refusal of preflight writes anything
@pytest.mark.parametrize(
    "args",
    [["clip=-1"], ["model=foo"], ["data.seq_len=0"], ["model.depht=3"], ["callbacks.divergence_guard.on_spike=x"]],
)
def test_cli_exits_nonzero_and_writes_nothing(tmp_path, args):
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert list(tmp_path.iterdir()) == []  # no outputs/, multirun/ or wandb/ directory


def test_clip_reaches_the_trainer(make_cfg):
    cfg = make_cfg("model=rnn", "clip=1.0")
    trainer = instantiate(cfg.trainer)
    assert trainer.gradient_clip_val == 1.0 and trainer.gradient_clip_algorithm == "norm"
    cfg = make_cfg("model=rnn", "clip=0.25", "clip_algorithm=value")
    trainer = instantiate(cfg.trainer)
    assert trainer.gradient_clip_val == 0.25 and trainer.gradient_clip_algorithm == "value"
    cfg = make_cfg("model=rnn", "clip=null")
    assert instantiate(cfg.trainer).gradient_clip_val is None
