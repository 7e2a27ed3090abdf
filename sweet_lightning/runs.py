"""Run bookkeeping for sweeps: skip completed runs, record failed ones, resume from last.ckpt.

A run directory holds at most one run. Its `results.json` says `"status": "completed"` (written by
train.write_results) or `"failed"` (written here). Re-launching a sweep into the same
`hydra.sweep.dir` gives every job the same directory again (`<job num>_<method>-...`), so:

- a completed run is skipped (its metric is returned, so sweepers still see it) unless `redo=true`;
- a completed run of a *different* configuration (e.g. the job numbering shifted because the command
  changed) is never overwritten: the job fails with a message instead;
- anything else runs, from `checkpoints/last.ckpt` when `resume=true`.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

COMPLETED, FAILED = "completed", "failed"
# keys that do not change what a run computes: ignored when matching a stored run to this one (dotted
# for a key inside a group: data.group_by_length changes the batches, so it is not ignored)
NOT_IDENTITY = (
    "redo",
    "resume",
    "run_dir",
    "logger",
    "data.glue_dir",
    "data.cache_dir",
    "data.num_workers",
    "data.sort_eval_by_length",  # the eval rows' order: float noise at most, outputs in dataset order
)
# keys added after runs were stored: a stored run without one ran as this value says
ADDED_KEYS = {"data.group_by_length": False}


class RunDirConflict(RuntimeError):
    """The run dir holds a completed run of another configuration."""


def read_results(out: Path) -> dict | None:
    try:
        return json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return None


def _identity(config: dict) -> dict:
    config = copy.deepcopy(config)
    for dotted in NOT_IDENTITY:
        *groups, key = dotted.split(".")
        _group(config, groups).pop(key, None)
    for dotted, value in ADDED_KEYS.items():
        *groups, key = dotted.split(".")
        _group(config, groups).setdefault(key, value)
    return config


def _group(config: dict, names: list[str]) -> dict:
    """The config group at `names` (created empty where missing, e.g. in an older stored config)."""
    for name in names:
        config = config.setdefault(name, {})
        if not isinstance(config, dict):
            return {}
    return config


def config_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain configs."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += config_diff(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def resolved(cfg: DictConfig) -> dict:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # a config that does not resolve is itself the error being recorded
        return OmegaConf.to_container(cfg, resolve=False)


def completed_value(cfg: DictConfig, out: Path) -> float | None:
    """The `optimized_metric` of the completed run already in `out` (to skip this one), else None.

    Raises RunDirConflict when `out` holds a completed run of another configuration.
    """
    previous = read_results(out)
    if not previous or previous.get("status") != COMPLETED or cfg.get("redo"):
        return None
    diff = config_diff(_identity(previous.get("config") or {}), _identity(resolved(cfg)))
    if diff:
        shown = ", ".join(diff[:8]) + (", ..." if len(diff) > 8 else "")
        raise RunDirConflict(
            f"{out} holds a completed run of another configuration (differs in: {shown}); "
            "re-launch into a new hydra.sweep.dir, or pass redo=true to overwrite it."
        )
    value = (previous.get("metrics") or {}).get(cfg.get("optimized_metric"))
    log.info("skipping %s: completed already (redo=true runs it again)", out)
    return float(value) if value is not None else float("nan")


def record_failure(cfg: DictConfig, out: Path, err: BaseException) -> None:
    """results.json with status "failed" and the error, unless it would overwrite a completed run
    that this job was not asked to redo (see RunDirConflict)."""
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank != 0:  # DDP: rank 0 records, the other ranks die with it
        return
    previous = read_results(out)
    if previous and previous.get("status") == COMPLETED and not cfg.get("redo"):
        return
    record = {
        "status": FAILED,
        "error": f"{type(err).__name__}: {err}",
        "traceback": "".join(traceback.format_exception(err)),
        "config": resolved(cfg),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(record, indent=2, default=str))
    log.error("run failed (%s); recorded in %s", record["error"], out / "results.json")


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """`"last"`: Lightning resumes from ModelCheckpoint's last.ckpt, or starts afresh when there is none."""
    return "last" if cfg.get("resume") else None


def is_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # outside Hydra
        return False


def swallow_failures() -> bool:
    """Whether a failed run returns NaN, so that the sweep goes on, rather than raising.

    Only in a multirun, and not under the Optuna sweeper: optuna 2.x's `study.tell` raises on NaN and
    the study stops with the trial left RUNNING, whereas a job that raises is recorded by the sweeper
    as a FAIL trial and the study goes on (`max_failure_rate`). The basic sweeper, in contrast, ends
    the whole multirun with an error when a job raised, after every job has run.
    """
    from hydra.core.hydra_config import HydraConfig

    return is_multirun() and HydraConfig.get().runtime.choices.get("hydra/sweeper") != "optuna"


# what Lightning's DDP launcher leaves in os.environ; the next job of an in-process sweep would take
# LOCAL_RANK for "ranks started externally" and wait for a rank 1 that nobody starts
_DDP_ENV = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def pin_ddp_relaunch(out: Path) -> None:
    """Make Lightning's DDP launcher re-run *this* job for ranks > 0, in a local (in-process) multirun.

    It starts them as `python <sys.argv> hydra.run.dir=<hydra.run.dir>`, which in a multirun would be
    the whole sweep (`-m ...`) in another folder. Here argv becomes this job's overrides and
    hydra.run.dir this job's folder, and the previous job's DDP state is cleared. (Submitit and Slurm
    jobs are processes of their own; under Slurm every rank is started by srun.)
    """
    import os

    import torch.distributed as dist
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    hydra_cfg = HydraConfig.get()
    if not is_multirun() or hydra_cfg.runtime.choices.get("hydra/launcher") != "basic":
        return
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = str(out)
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key in _DDP_ENV:
        os.environ.pop(key, None)


class SweepSummary(HydraCallback):
    """Hydra callback: when a multirun ends, say how many jobs completed and name the failed ones,
    so a sweep that went on past failures does not look like a clean one."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        statuses: dict[str, list[str]] = {}
        for path in sorted(sweep.glob("*/results.json")):
            status = (read_results(path.parent) or {}).get("status", "unreadable")
            statuses.setdefault(status, []).append(path.parent.name)
        counts = ", ".join(f"{len(v)} {k}" for k, v in sorted(statuses.items())) or "no results"
        log.info("sweep %s: %s", sweep, counts)
        for name in statuses.get("failed", []):
            log.warning("failed job: %s (see its results.json)", sweep / name)
