"""Running launch.py from tests: in this process (fast: no second import of torch/transformers) or as
a subprocess (the real command line, launchers and all)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, compose

# a tiny run: random 4-layer BERT, 32 RTE examples, 1 epoch, CSV logs only
TINY = [
    "model=tiny_bert",
    "task=glue/rte",
    "train_size=32",
    "calibration_size=32",
    "max_seq_length=64",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.num_sanity_val_steps=0",
    "logger=csv",
]


def run_in_process(overrides: list[str], out: Path) -> float:
    """train() as launch.py would call it for `python launch.py <overrides> run_dir=<out>`."""
    from omegaconf import open_dict

    from sweet_lightning.train import train

    cfg = compose([*overrides, f"run_dir={out}"], output_dir=out)
    with open_dict(cfg):
        del cfg["hydra"]
    return train(cfg)


def launch(
    args: list[str], cwd: Path, timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """`python launch.py <args>` with cwd=`cwd` (so multirun/ and outputs/ land there)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO / "launch.py"), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job dirs of a sweep, by job number."""
    dirs = [p for p in sweep_dir.iterdir() if p.is_dir() and p.name.split("_", 1)[0].isdigit()]
    return sorted(dirs, key=lambda p: int(p.name.split("_", 1)[0]))


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones included) and a hash of its bytes."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
