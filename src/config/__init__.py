"""Config plumbing: the structured schemas and the resolvers conf/*.yaml uses, registered by ``register()``.

Nothing happens on import: whatever composes conf/train.yaml calls ``register()`` first (scripts/train.py,
``src.config.compose.compose_run``, ``src.config.preflight.check``). It is idempotent.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from omegaconf import OmegaConf

from src.analysis.formatting import clip_label

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

# One id per process: two runs started in the same second still get different run directories, and every
# re-resolution of hydra.run.dir inside one process gives the same directory.
RUN_UID = f"{os.getpid():x}{secrets.token_hex(2)}"


def register() -> None:
    """Store the schemas in Hydra's ConfigStore and register the ``run_uid`` and ``clip_label`` resolvers."""
    from src.config.schema import register_schemas  # imports the model modules: only when composing

    register_schemas()
    if not OmegaConf.has_resolver("run_uid"):
        OmegaConf.register_new_resolver("run_uid", lambda: RUN_UID)
    if not OmegaConf.has_resolver("clip_label"):
        OmegaConf.register_new_resolver("clip_label", clip_label)
