"""Bad input fails before anything is written, with one line naming the key and what is allowed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

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


def test_a_typo_is_refused_before_lightning_is_imported():
    """The pre-flight's checks of keys, choices, ranges and tasks need Hydra, OmegaConf and torch, not Lightning
    (seconds to import): only the checks that read Lightning's own lists or build the objects import it."""
    typos = [["clip=-1"], ["model=foo"], ["data.seq_len=0"], ["model.depht=3"]]
    code = (
        "import sys\nfrom src.config.preflight import check\n"
        f"for args in {typos!r}:\n    try:\n        check(args)\n    except Exception as err:\n"
        "        print(type(err).__name__)\nprint('lightning' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["ConfigError"] * len(typos) + ["False"], proc.stderr


def test_clip_reaches_the_trainer(make_cfg):
    cfg = make_cfg("model=rnn", "clip=1.0")
    trainer = instantiate(cfg.trainer)
    assert trainer.gradient_clip_val == 1.0 and trainer.gradient_clip_algorithm == "norm"
    cfg = make_cfg("model=rnn", "clip=0.25", "clip_algorithm=value")
    trainer = instantiate(cfg.trainer)
    assert trainer.gradient_clip_val == 0.25 and trainer.gradient_clip_algorithm == "value"
    cfg = make_cfg("model=rnn", "clip=null")
    assert instantiate(cfg.trainer).gradient_clip_val is None


def test_importing_gradlab_changes_no_process_wide_state():
    # no module-registration hooks from the callbacks, no resolvers or schemas from src.config, until asked
    code = textwrap.dedent(
        """
        import torch.nn.modules.module as m
        from hydra.core.config_store import ConfigStore
        from omegaconf import OmegaConf
        hooks = lambda: (len(m._global_module_registration_hooks), len(m._global_parameter_registration_hooks))
        before = hooks()
        import src.callbacks, src.clipping, src.config, src.config.compose, src.config.preflight, src.train
        assert hooks() == before, (before, hooks())
        assert not OmegaConf.has_resolver("run_uid") and not OmegaConf.has_resolver("clip_label")
        assert "train_schema.yaml" not in ConfigStore.instance().repo
        src.config.register()
        assert OmegaConf.has_resolver("run_uid") and "train_schema.yaml" in ConfigStore.instance().repo
        print("clean")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "clean", proc.stderr[-2000:]


CALLBACK_FILES = sorted(p.stem for p in (REPO / "conf" / "callbacks").glob("*.yaml"))


def test_one_yaml_per_callback_composed_into_default_minimal_and_none(make_cfg):
    sets = {"default", "minimal", "none"}
    singles = [name for name in CALLBACK_FILES if name not in sets]
    for name in singles:  # each file: one callback under its own name
        node = OmegaConf.load(REPO / "conf" / "callbacks" / f"{name}.yaml")
        assert list(node) == [name] and "_target_" in node[name], name
    default = make_cfg("callbacks=default").callbacks
    assert sorted(default) == singles
    minimal = ["model_checkpoint", "preemption_sync", "grad_norm", "divergence_guard"]
    assert list(make_cfg("callbacks=minimal").callbacks) == minimal
    assert not make_cfg("callbacks=none").callbacks
    assert default.histograms == OmegaConf.load(REPO / "conf" / "callbacks" / "histograms.yaml").histograms
    # command-line overrides reach the composed callbacks
    cfg = make_cfg("callbacks=default", "callbacks.histograms=null", "callbacks.divergence_guard.on_spike=skip")
    assert cfg.callbacks.histograms is None and cfg.callbacks.divergence_guard.on_spike == "skip"


def test_clip_presets_sweep_every_way_to_clip():
    check(["-m", "experiment=clipping_comparison"])  # every job of the sweep composes and validates
    presets = {
        "none": (None, "norm", None, 0.0),
        "norm": (1.0, "norm", None, 0.0),
        "value": (1.0, "value", None, 0.0),
        "layerwise": (None, "norm", "src.clipping.LayerwiseNormClip", 0.0),
        "penalty": (None, "norm", None, 0.01),
    }
    for name, (clip, algorithm, rule, penalty) in presets.items():
        with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
            cfg = compose("train", overrides=["experiment=clipping_comparison", f"+clip_preset={name}"])
        assert cfg.clip == clip and cfg.clip_algorithm.value == algorithm, name
        assert OmegaConf.select(cfg, "clipping._target_") == rule and cfg.loss.grad_penalty == penalty, name
