"""Read an offline W&B run back from the `.wandb` file wandb itself wrote.

wandb 0.31 has no Python reader for this file any more (its own reader moved into the Go core), so
this decodes it here: a 7-byte header (b":W&B", magic 0xBEE1, version 0) followed by a LevelDB-style
log of 32 KiB blocks, each chunk a 7-byte header (crc32c, length, type) and a piece of one serialized
`wandb.proto.wandb_internal_pb2.Record`. The records are wandb's own protobufs, decoded by wandb's
own classes; only the framing is parsed here.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), f"{path} is not a .wandb transaction log"
    out, pending, pos = [], b"", 7
    while pos + CHUNK_HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < CHUNK_HEADER:  # block trailer: zero padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        piece = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        if kind == 0 and length == 0:  # preallocated tail
            break
        pending = piece if kind in (FULL, FIRST) else pending + piece
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def _items(items) -> dict:
    """config/summary items: nested_key (a path) or key, with a JSON value."""
    flat = {}
    for item in items:
        key = ".".join(item.nested_key) if item.nested_key else item.key
        flat[key] = json.loads(item.value_json)
    return flat


@dataclass
class OfflineRun:
    run: wandb_internal_pb2.RunRecord | None = None
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    artifacts: list[wandb_internal_pb2.ArtifactRecord] = field(default_factory=list)


def finished_records(path: Path, timeout: float = 60.0) -> list[wandb_internal_pb2.Record]:
    """The records once the run's closing "exit" record is in the file: wandb's core process writes the
    file on its own schedule, and can still be writing when `run.finish()` has returned."""
    deadline = time.monotonic() + timeout
    while True:
        found = records(path)
        if (found and found[-1].WhichOneof("record_type") == "exit") or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def read_run(run_dir: Path) -> OfflineRun:
    """Config, summary, history and artifacts of `run_dir` (an offline-run-* folder) as logged."""
    (path,) = run_dir.glob("run-*.wandb")
    run = OfflineRun()
    for record in finished_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run = record.run
            run.config.update(_items(record.run.config.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
            for item in record.config.remove:
                run.config.pop(".".join(item.nested_key) if item.nested_key else item.key, None)
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
        elif kind == "history":
            run.history.append(_items(record.history.item))
        elif kind == "artifact":
            run.artifacts.append(record.artifact)
    return run


def offline_runs(root: Path) -> list[Path]:
    return sorted(root.glob("**/wandb/offline-run-*"))
