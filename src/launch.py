"""Hydra multirun + Lightning DDP without nested sweeps.

Lightning's subprocess launcher starts the other ranks as ``python script.py <sys.argv[1:]>
hydra.run.dir=<HydraConfig run.dir> hydra.job.name=train_ddp_process_<r> hydra.output_subdir=null``
(lightning/fabric/strategies/launchers/subprocess_script.py). Inside a ``-m`` sweep, ``sys.argv`` still holds
``-m`` and the comma lists, so every child would start a sweep of its own, and ``run.dir`` is not the job's
directory (Lightning #11300, #2727; Hydra #2070). Before the Trainer starts, a multirun job rewrites both:
the command line becomes this job's own overrides as a single run, and ``run.dir`` the job's output dir.
After the job, its process group and the variables Lightning put in the environment (LOCAL_RANK,
MASTER_PORT, ...) are removed: the basic launcher runs the next job in the same process, and Lightning takes
a set LOCAL_RANK to mean "already launched" and would not start the other ranks again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict


def single_run_argv_for_ddp_children() -> None:
    """In a multirun job, make ``sys.argv`` and ``hydra.run.dir`` describe this one job (no-op otherwise)."""
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    if getattr(hydra_cfg.mode, "name", None) != "MULTIRUN":
        return
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]  # this job's resolved overrides, no -m, no lists
    OmegaConf.set_readonly(hydra_cfg, False)
    with open_dict(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


@contextmanager
def distributed_job_scope() -> Iterator[None]:
    """Leave no process group and no launcher variables behind for the next job of a sweep."""
    before = dict(os.environ)
    try:
        yield
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for key in set(os.environ) - set(before):
            del os.environ[key]
        os.environ.update(before)
