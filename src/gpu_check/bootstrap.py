"""The packages a bare GPU image lacks, installed from carried wheels, and the environment of every child process.

A GPU machine's own Python may hold torch, Lightning and torchmetrics but not Hydra, OmegaConf or W&B, and no
package index. ``make gpu-wheels`` downloads those (cp312, manylinux) with their dependencies into ``.whl/``;
here, when one of them cannot be imported, they are installed from there (no index, no dependency resolution)
into a folder of their own, put first on this process's path and on every child's PYTHONPATH (the repository
too: gradlab need not be pip-installed there).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

NEEDED = ("hydra", "omegaconf", "wandb")


def missing() -> list[str]:
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def ensure_packages(repo: Path, site: Path) -> str:
    """Make NEEDED importable here (installing ``repo/.whl/*.whl`` into ``site`` if needed); says what it did."""
    absent = missing()
    if not absent:
        return "hydra, omegaconf and wandb already importable"
    wheels = sorted((repo / ".whl").glob("*.whl"))
    if not wheels:
        raise SystemExit(
            f"error: {', '.join(absent)} cannot be imported and {repo / '.whl'} holds no wheels: run "
            "`make gpu-wheels` where pip reaches an index, and bring .whl/ along"
        )
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir"]
    subprocess.run([*pip, "--upgrade", "--target", str(site), *map(str, wheels)], check=True)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    still = missing()
    if still:
        raise SystemExit(f"error: {', '.join(still)} still cannot be imported after installing {len(wheels)} wheels")
    return f"installed {len(wheels)} wheels from .whl/ into {site}"


def child_env(repo: Path, site: Path, threads: int) -> dict[str, str]:
    """Environment of every child: the carried packages and the repository importable, W&B offline and quiet,
    ``threads`` OpenMP threads, unbuffered output (a child killed at the deadline leaves its last lines)."""
    env = dict(os.environ)
    paths = [str(site)] if site.is_dir() else []
    paths += [str(repo), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    env.update(
        PYTHONPATH=os.pathsep.join(paths),
        OMP_NUM_THREADS=str(threads),
        PYTHONUNBUFFERED="1",
        MPLBACKEND="Agg",
        WANDB_MODE=env.get("WANDB_MODE", "offline"),
        WANDB_SILENT="true",
        WANDB_DIR=str(site.parent / "wandb"),
    )
    return env
