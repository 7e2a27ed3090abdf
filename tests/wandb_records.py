"""Read an offline W&B run back from the files the real wandb package wrote.

wandb 0.31 reads its own `.wandb` transaction log with `wandb leet inspect --json` (one JSON object
per record: run, config, summary, history, artifact, exit, ...); the tests go through that reader
rather than decoding the file themselves.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def records(run_dir: Path) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def finished_records(run_dir: Path, timeout: float = 60.0) -> list[dict]:
    """The records once the closing "exit" record is in the file: wandb's core process writes the file
    on its own schedule and can still be writing when `run.finish()` has returned."""
    deadline = time.monotonic() + timeout
    while True:
        found = records(run_dir)
        if (found and found[-1]["type"] == "exit") or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@dataclass
class OfflineRun:
    run: dict = field(default_factory=dict)  # run_group, job_type, display_name, ...
    config: dict = field(
        default_factory=dict
    )  # top-level keys as logged (`_wandb.visualize.<key>` for charts)
    summary: dict = field(default_factory=dict)
    artifacts: list[dict] = field(default_factory=list)


def read_run(run_dir: Path) -> OfflineRun:
    """Run record, config, summary and artifacts of `run_dir` (an offline-run-* folder) as logged."""
    run = OfflineRun()
    for record in finished_records(run_dir):
        kind = record["type"]
        if kind == "run":
            run.run = record["run"]
        elif kind == "config":
            run.config.update(record["config"].get("update", {}))
        elif kind == "summary":
            run.summary.update(record["summary"].get("update", {}))
        elif kind == "artifact":
            run.artifacts.append(record["artifact"])
    return run


def offline_runs(root: Path) -> list[Path]:
    return sorted(root.glob("**/wandb/offline-run-*"))
