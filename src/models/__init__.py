"""The networks (plain ``nn.Module``s) and the one LightningModule.

Each name is imported from its module on first use (PEP 562): a config check that reads a model class (the
pre-flight) need not import Lightning, which only ``GradLabModule`` needs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from src.models.chain import ScalarChain
    from src.models.mlp import MLP
    from src.models.module import GradLabModule
    from src.models.recurrent import RecurrentNet
    from src.models.transformer import Transformer

_MODULE_OF = {"MLP": "mlp", "GradLabModule": "module", "RecurrentNet": "recurrent", "ScalarChain": "chain",
              "Transformer": "transformer"}  # fmt: skip
__all__ = ["MLP", "GradLabModule", "RecurrentNet", "ScalarChain", "Transformer"]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
