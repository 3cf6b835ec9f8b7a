"""Read what an offline W&B run recorded (the records `wandb sync` would upload), for assertions in tests.

wandb >= 0.19 writes offline runs only to ``run-<id>.wandb``: a leveldb-style log (7-byte header ``:W&B``,
magic 0xBEE1, version; 32 KiB blocks of records with a 4-byte crc, 2-byte length and 1-byte type, where a
record may be split FIRST/MIDDLE/LAST across blocks) of ``wandb_internal_pb2.Record`` protobufs.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
from wandb.proto import wandb_internal_pb2 as pb

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _parse(data: bytes, base: int) -> list[pb.Record]:
    """Records of a log whose 32 KiB blocks start at byte ``base`` (after or including the file header)."""
    out, pos, pending = [], HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - (pos - base) % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0:  # zero fill to the end of the block
            pos += left
            continue
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (FIRST, MIDDLE):
            pending = chunk if kind == FIRST else pending + chunk
            continue
        record = pb.Record()
        record.ParseFromString(pending + chunk if kind == LAST else chunk)
        pending = b""
        out.append(record)
    return out


def records(path: Path) -> list[pb.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    try:  # wandb-core writes the 7-byte file header before its first block
        return _parse(data, HEADER)
    except DecodeError:  # the older layout counted the header inside the first block
        return _parse(data, 0)


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)  # newer wandb splits "a/b" keys into nested_key


def offline_run(run_dir: Path) -> dict[str, Any]:
    """Config, group, job type, tags, summary and history keys of one ``offline-run-*`` directory."""
    (log,) = run_dir.glob("run-*.wandb")
    out: dict[str, Any] = {"config": {}, "summary": {}, "history_keys": set(), "tags": []}
    for record in records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.update(group=record.run.run_group, job_type=record.run.job_type, tags=list(record.run.tags))
            items = record.run.config.update
        elif kind == "config":
            items = record.config.update
        elif kind == "summary":
            out["summary"].update({_key(i): json.loads(i.value_json) for i in record.summary.update})
            continue
        elif kind == "history":
            out["history_keys"].update(_key(i) for i in record.history.item)
            continue
        else:
            continue
        out["config"].update({_key(i): json.loads(i.value_json) for i in items})
    return out
