"""Reading what a ``wandb.log``-ing program logged, from WandB's own run file, with no server.

An offline (or online) WandB run writes every record to ``run-<id>.wandb``: a LevelDB-style log (32 KiB
blocks of chunks with a 7-byte header: CRC32C, length, type FULL/FIRST/MIDDLE/LAST) behind a 7-byte
``:W&B`` file header, each record a ``wandb_internal.Record`` protobuf. WandB's Python package no longer
ships a reader (its Go core reads them), so this is the small reader: it takes ``history`` records (one
per ``wandb.log`` step) and replays ``summary`` updates, which is what WandB's sweep controller ranks by.
A file that is still being written is read up to its last complete record, so it can be polled while the
program runs (for hyperband).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
FILE_HEADER = 7  # b":W&B" + magic 0xBEE1 (little-endian) + version byte
CHUNK_HEADER = struct.Struct("<IHB")  # crc32c, length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class WandbRun:
    """What a run logged: one dict per ``wandb.log`` step (internal ``_`` keys dropped) and the final summary."""

    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    exited: bool = False


def _records(data: bytes) -> list[bytes]:
    records, parts, pos = [], [], FILE_HEADER
    while pos + CHUNK_HEADER.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER.size:  # block trailer padding
            pos += left
            continue
        _, length, kind = CHUNK_HEADER.unpack_from(data, pos)
        if kind == 0 and length == 0:  # zero padding at the end of a block
            pos += left
            continue
        start, pos = pos + CHUNK_HEADER.size, pos + CHUNK_HEADER.size + length
        if pos > len(data):
            break  # the writer has not finished this chunk
        if kind in (FULL, FIRST):
            parts = []
        parts.append(data[start:pos])
        if kind in (FULL, LAST):
            records.append(b"".join(parts))
    return records


def _key(item: Any) -> str:
    return ".".join(item.nested_key) if item.nested_key else item.key


def _value(item: Any) -> Any:
    if item.value_json:
        return json.loads(item.value_json)
    kind = item.WhichOneof("value") if hasattr(item, "WhichOneof") else None
    if kind == "json":
        return json.loads(item.json)
    return None if kind in (None, "none") else getattr(item, kind)


def read_wandb_run(path: str | Path) -> WandbRun:
    """Parse a ``run-<id>.wandb`` file (complete records only)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    run = WandbRun()
    if not data.startswith(b":W&B"):
        return run
    for raw in _records(data):
        record = pb.Record()
        try:
            record.ParseFromString(raw)
        except Exception:  # protobuf's DecodeError: a record from a newer WandB; skip it like WandB's reader
            continue
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {_key(i): _value(i) for i in record.history.item}
            run.history.append({k: v for k, v in row.items() if not k.startswith("_") or k == "_step"})
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[_key(item)] = _value(item)
            for item in record.summary.remove:
                run.summary.pop(_key(item), None)
        elif kind == "exit":
            run.exited = True
    run.summary = {k: v for k, v in run.summary.items() if not k.startswith("_")}
    return run


def find_run_file(wandb_dir: str | Path, run_id: str) -> Path | None:
    """The run file of ``run_id`` under ``wandb_dir`` (``wandb/offline-run-*-<id>/`` or ``wandb/run-*-<id>/``)."""
    hits = sorted(Path(wandb_dir).glob(f"wandb/*run-*-{run_id}/run-{run_id}.wandb"))
    return hits[-1] if hits else None
