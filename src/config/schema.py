"""Structured-config schemas (Hydra ConfigStore): types and enums are checked when the config is composed.

A YAML file of a group extends its schema (``defaults: [/schema/model/mlp@_here_, _self_]``), so a typo'd
key, a string where a number belongs or an unknown activation fails at composition, before any output.
Ranges (clip > 0, seq_len >= 2, ...) are checked in ``src/config/validate.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from src.models.init import Init
from src.models.mlp import Activation, Norm
from src.models.recurrent import Cell
from src.models.transformer import NormPosition


class TaskName(str, Enum):
    adding = "adding"
    copy = "copy"
    temporal_order = "temporal_order"
    recall = "recall"
    scalar = "scalar"


class ClipAlgorithm(str, Enum):
    norm = "norm"
    value = "value"


class Nonlinearity(str, Enum):
    tanh = "tanh"
    relu = "relu"


@dataclass
class MLPConf:
    _target_: str = "src.models.mlp.MLP"
    depth: int = 8
    width: int = 64
    activation: Activation = Activation.relu
    negative_slope: float = 0.01
    norm: Norm = Norm.none
    residual: bool = False
    init: Init = Init.he
    init_std: float = 1.0
    init_gain: float | None = None
    init_value: float = 1.0
    head_init: Init = Init.default


@dataclass
class RecurrentConf:
    _target_: str = "src.models.recurrent.RecurrentNet"
    cell: Cell = Cell.lstm
    nonlinearity: Nonlinearity = Nonlinearity.tanh
    hidden_size: int = 64
    num_layers: int = 1
    init: Init = Init.xavier
    recurrent_init: Init = Init.orthogonal
    init_std: float = 0.1
    init_gain: float | None = None
    recurrent_gain: float = 1.0
    init_value: float = 1.0
    forget_bias: float = 1.0
    head_init: Init = Init.default


@dataclass
class TransformerConf:
    _target_: str = "src.models.transformer.Transformer"
    depth: int = 2
    width: int = 64
    heads: int = 4
    mlp_ratio: int = 4
    norm_position: NormPosition = NormPosition.pre
    causal: bool = True
    qk_norm: bool = False
    init: Init = Init.xavier
    init_std: float = 0.02


@dataclass
class ChainConf:
    _target_: str = "src.models.chain.ScalarChain"
    depth: int = 5
    init_value: float = 2.0


@dataclass
class DataConf:
    _target_: str = "src.data.datamodule.SyntheticDataModule"
    task: TaskName = TaskName.adding
    seq_len: int = 50
    batch_size: int = 64
    shards_per_device: int = 1
    batches_per_epoch: int = 100
    val_size: int = 1024
    test_size: int = 1024
    eval_batch_size: int = 512
    val_seed: int = 1234
    seed: int = "${seed}"  # type: ignore[assignment]
    x: float = 1.0
    repeat_batches: int = 0
    corrupt_every: int = 0
    corrupt_scale: float = 1000.0


@dataclass
class LossConf:
    """Terms added to the task's training loss (validation and test report the task's loss alone)."""

    z_loss: float = 0.0  # z_loss·mean(logsumexp(logits)²) (src/models/module.py); 0 = off
    grad_penalty: float = 0.0  # λ of λ·||∇_θ L||² (src/models/module.py); 0 = off


@dataclass
class TrainConf:
    model: Any = MISSING
    data: DataConf = MISSING
    optimizer: Any = MISSING
    scheduler: Any = None
    trainer: Any = MISSING
    logger: Any = field(default_factory=dict)
    callbacks: Any = field(default_factory=dict)
    clipping: Any = None
    loss: LossConf = field(default_factory=LossConf)
    debug: Any = None
    experiment: Any = None
    paths: Any = field(default_factory=dict)
    clip: float | None = 1.0
    clip_algorithm: ClipAlgorithm = ClipAlgorithm.norm
    seed: int = 0
    name: str = MISSING
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    test: bool = True
    ckpt_path: str | None = None
    overwrite: bool = False


def register_schemas() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConf)
    cs.store(group="schema/model", name="mlp", node=MLPConf)
    cs.store(group="schema/model", name="recurrent", node=RecurrentConf)
    cs.store(group="schema/model", name="transformer", node=TransformerConf)
    cs.store(group="schema/model", name="chain", node=ChainConf)
    cs.store(group="schema/data", name="synthetic", node=DataConf)
