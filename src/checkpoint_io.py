"""AtomicCheckpointIO: a checkpoint file is always the old complete file or the new complete file.

Lightning 2.6 (``TorchCheckpointIO`` -> ``lightning.fabric.utilities.cloud_io._atomic_save``) writes local
checkpoints through an fsspec transaction: ``LocalFileOpener`` writes a ``tempfile.mkstemp()`` file in the
*system* temp directory and commits it with ``shutil.move``. When that directory is on another filesystem than
the run directory (a tmpfs /tmp, a node-local disk beside a shared run directory), the move is a copy into the
target path: a kill during the copy leaves a truncated ``last.ckpt``. Nothing is fsynced either, so a power
loss can leave a renamed but empty file.

Here the temporary file is created in the target's own directory (so ``os.replace`` is an atomic rename on
every POSIX filesystem), flushed and fsynced before the rename, and the directory is fsynced after it.
Remote paths (s3://, gs://, ...) keep Lightning's fsspec path: an object-store PUT is already all-or-nothing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override

# temporary files start with this prefix and never end in .ckpt, so nothing that globs for checkpoints (nor
# Lightning's ckpt_path="last", which looks for "last" in the file names) ever picks up a half-written one
PARTIAL_PREFIX = ".partial-"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems (and Windows) cannot open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _temporary_beside(target: Path) -> Iterator[Path]:
    """A fresh name in ``target``'s directory; what the block creates there is moved onto ``target`` at the end
    (removed if the block fails), and the directory is fsynced so the rename survives a power loss."""
    tmp = target.parent / f"{PARTIAL_PREFIX}{secrets.token_hex(6)}.tmp"
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)


def atomic_write(target: _PATH, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``target``, then move it into place atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: never write into someone else's file; 0o666 & ~umask, the mode an ordinary open() would give.
    # The file is closed (inner context) before _temporary_beside renames it.
    with (
        _temporary_beside(target) as tmp,
        os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f,
    ):
        write(f)
        f.flush()
        os.fsync(f.fileno())


def atomic_symlink(source: _PATH, link: _PATH) -> None:
    """Point ``link`` at ``source`` (relative), replacing whatever ``link`` was in one rename."""
    link = Path(link)
    with _temporary_beside(link) as tmp:
        os.symlink(os.path.relpath(source, link.parent), tmp)


def remove_partial_files(directory: _PATH) -> list[Path]:
    """Delete the temporary files a killed writer left in ``directory``; returns what was removed."""
    removed = []
    for path in Path(directory).glob(f"{PARTIAL_PREFIX}*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with a same-directory temporary file, fsync and ``os.replace``.

    Pass it to the Trainer (``Trainer(plugins=[AtomicCheckpointIO()])``; gradlab's trainer configs do): every
    checkpoint the Trainer writes — ``ModelCheckpoint``'s best/last, a SIGTERM save, Lightning's SLURM
    ``hpc_ckpt_*.ckpt`` — then goes through it. Loading and removing are Lightning's. Takes no arguments.
    """

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            super().save_checkpoint(checkpoint, path, storage_options)  # same TypeError / fsspec path as Lightning
            return
        local = str(path).removeprefix("file://")
        atomic_write(local, lambda f: self._write(checkpoint, f))

    def _write(self, checkpoint: dict[str, Any], file: IO[bytes]) -> None:
        torch.save(checkpoint, file)
