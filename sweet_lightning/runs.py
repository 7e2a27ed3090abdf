"""Run bookkeeping for sweeps: skip completed runs, record failed ones, resume from last.ckpt.

A run directory holds at most one run. Its `results.json` says `"status": "completed"` (written by
train.write_results) or `"failed"` (written here). Re-launching a sweep into the same
`hydra.sweep.dir` gives every job the same directory again (`<job num>_<method>-...`), so:

- a completed run is skipped (its metric is returned, so sweepers still see it) unless `redo=true`;
- a completed run of a *different* configuration (e.g. the job numbering shifted because the command
  changed) is never overwritten: the job fails with a message instead;
- either way the run dir is left byte for byte as it was, `.hydra/` and `launch.log` included
  (sweet_lightning.run_snapshot undoes what Hydra wrote there before the job started);
- anything else runs, from `checkpoints/last.ckpt` when `resume=true`;
- a run dir that another live process is writing is refused (sweet_lightning.runlock);
- a run stopped by SIGTERM records `"status": "interrupted"` and exits non-zero.

In a multirun each job also notes what it did in *this* launch (completed, skipped, refused,
failed, interrupted) under `<sweep dir>/.outcomes/<launch id>/`, which SweepSummary reports.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback as HydraCallback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from sweet_lightning import run_snapshot
from sweet_lightning.cli import first_line
from sweet_lightning.run_record import COMPLETED, FAILED, INTERRUPTED, RunRecord, flatten
from sweet_lightning.runlock import RunDirLocked, run_dir_lock

log = logging.getLogger(__name__)

# what a job did in one launch of a sweep (SweepSummary); only the first two leave a usable run
SKIPPED, REFUSED = "skipped", "refused"
OUTCOMES = (COMPLETED, SKIPPED, REFUSED, FAILED, INTERRUPTED)
LAUNCH_ENV = "SWEET_LAUNCH_ID"  # set by SweepSummary for the jobs of one launch (inherited by submitit jobs)
SIGTERM_EXIT = 143  # 128 + SIGTERM, as a shell reports a process ended by it
# keys that do not change what a run computes: ignored when matching a stored run to this one (dotted
# for a key inside a group: data.group_by_length changes the batches, so it is not ignored)
NOT_IDENTITY = (
    "redo",
    "resume",
    "run_dir",
    "logger",
    "sweep_fail_exit",
    "keep_checkpoints",
    "keep_freed_memory",  # where freed memory goes between steps: the same numbers either way
    "data.glue_dir",
    "data.cache_dir",
    "data.num_workers",
    "data.sort_eval_by_length",  # the eval rows' order: float noise at most, outputs in dataset order
    # where the constructor lives in the code, not what it computes (runs stored before these existed)
    "data._target_",
    "evaluation._target_",
)
# keys added after runs were stored: a stored run without one ran as this value says
ADDED_KEYS = {"data.group_by_length": False}
# interpolations that read the environment or the run dir rather than other keys (see derived_keys)
ENVIRONMENT_RESOLVERS = ("oc.env:", "sl.deterministic:", "now:", "hydra:", "sl.sweep_group:")


class RunDirConflict(RuntimeError):
    """The run dir holds a completed run of another configuration."""


def derived_keys(cfg: DictConfig) -> list[str]:
    """Dotted keys whose value only passes on other keys (`${lr}`; conf/train.yaml's constructor
    nodes `module`, `data`, `evaluation` are mostly such). A run is compared through the keys they
    read, so runs stored before those nodes existed still match the same command."""
    flat = flatten(OmegaConf.to_container(cfg, resolve=False), empty_groups=True)
    interpolations = {k: v for k, v in flat.items() if isinstance(v, str) and "${" in v}
    return [k for k, v in interpolations.items() if not any(r in v for r in ENVIRONMENT_RESOLVERS)]


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(f"{prefix}.")


def _in_run_dir(value: Any, out: Path) -> bool:
    """Whether `value` is a path at or under the run dir (trainer.default_root_dir, a checkpoint's
    dirpath): where the checkout lives, not what the run computes, so a sweep re-launched from another
    clone or folder still skips the runs committed in it. Only absolute paths, as Hydra writes the run
    dir: with run_dir=. a task name would be "under" it."""
    if not isinstance(value, str) or not Path(value).is_absolute():
        return False
    return Path(value).resolve().is_relative_to(out.resolve())


def resolved(cfg: DictConfig) -> dict:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # a config that does not resolve is itself the error being recorded
        return OmegaConf.to_container(cfg, resolve=False)


def _kept_run(cfg: DictConfig, out: Path) -> RunRecord | None:
    """The completed run in `out`, unless this job was asked to redo it: never overwritten."""
    return None if cfg.get("redo") else RunRecord.read_completed(out)


def completed_value(cfg: DictConfig, out: Path) -> float | None:
    """The `optimized_metric` of the completed run already in `out` (to skip this one), else None;
    RunDirConflict when that run is of another configuration."""
    previous = _kept_run(cfg, out)
    if previous is None:
        return None
    current = flatten(resolved(cfg), empty_groups=True)
    stored = flatten(previous.config or {}, empty_groups=True)
    # a key that only passes on others is left out where the stored run predates it, not otherwise:
    # the values it passed on then are part of what that run computed
    predates = [k for k in derived_keys(cfg) if not any(_under(s, k) for s in stored)]
    ignored = [*NOT_IDENTITY, *predates, *(k for k, v in current.items() if _in_run_dir(v, out))]

    def identity(flat: dict[str, Any]) -> dict[str, Any]:
        return {**ADDED_KEYS, **{k: v for k, v in flat.items() if not any(_under(k, i) for i in ignored)}}

    current, stored = identity(current), identity(stored)
    # a key on one side only compares as None: a key added since with a null default is the same run
    diff = [k for k in current.keys() | stored.keys() if current.get(k) != stored.get(k)]
    if diff:
        diff.sort(key=lambda k: k.split("."))  # group by group, as the config reads
        shown = ", ".join(diff[:8]) + (", ..." if len(diff) > 8 else "")
        raise RunDirConflict(
            f"{out} holds a completed run of another configuration (differs in: {shown}); "
            "re-launch into a new hydra.sweep.dir, or pass redo=true to overwrite it."
        )
    value = (previous.metrics or {}).get(cfg.get("optimized_metric"))
    log.info("skipping %s: completed already (redo=true runs it again)", out)
    return float(value) if value is not None else float("nan")


def _record(cfg: DictConfig, out: Path, status: str, error: str, **fields: Any) -> Path | None:
    """Write results.json with `status`; where it was written, or None on DDP ranks > 0 (rank 0
    records, the other ranks die with it) and where `out` holds a run to keep (_kept_run)."""
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank != 0 or _kept_run(cfg, out) is not None:
        return None
    return RunRecord(status=status, error=error, config=resolved(cfg), **fields).save(out)


def record_failure(cfg: DictConfig, out: Path, err: BaseException) -> None:
    """results.json with status "failed", the error and its traceback (see _record)."""
    error = f"{type(err).__name__}: {err}"
    path = _record(cfg, out, FAILED, error, traceback="".join(traceback.format_exception(err)))
    if path is not None:
        log.error("run failed (%s); recorded in %s", error, path)


def record_interrupted(cfg: DictConfig, out: Path) -> None:
    """results.json with status "interrupted" and the epoch-end checkpoint (callbacks.last_checkpoint)
    that a `resume=true` run continues from."""
    dirpath = OmegaConf.select(cfg, "callbacks.last_checkpoint.dirpath", default=None)
    last = Path(dirpath) / "last.ckpt" if dirpath else None
    ckpt = str(last) if last is not None and last.exists() else None
    path = _record(cfg, out, INTERRUPTED, "stopped by SIGTERM", checkpoint=ckpt)
    if path is not None:
        record_outcome(out, INTERRUPTED, f"stopped by SIGTERM; last checkpoint: {ckpt}")
        start = ckpt or "the start (no epoch ended)"
        log.error("interrupted by SIGTERM: recorded in %s; resume=true continues from %s", path, start)


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """`"last"`: Lightning resumes from ModelCheckpoint's last.ckpt, or starts afresh when there is none."""
    return "last" if cfg.get("resume") else None


def is_multirun() -> bool:
    try:
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
    return is_multirun() and HydraConfig.get().runtime.choices.get("hydra/sweeper") != "optuna"


def pin_ddp_relaunch(out: Path) -> None:
    """Make Lightning's DDP launcher re-run *this* job for ranks > 0, in a local (in-process) multirun.

    It starts them as `python <sys.argv> hydra.run.dir=<hydra.run.dir>`, which in a multirun would be
    the whole sweep (`-m ...`) in another folder. Here argv becomes this job's overrides and
    hydra.run.dir this job's folder, and the previous job's DDP state is cleared. (Submitit and Slurm
    jobs are processes of their own; under Slurm every rank is started by srun.)
    """
    import torch.distributed as dist

    hydra_cfg = HydraConfig.get()
    if not is_multirun() or hydra_cfg.runtime.choices.get("hydra/launcher") != "basic":
        return
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = str(out)
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    # what Lightning's DDP launcher left in os.environ: the next job of an in-process sweep would take
    # LOCAL_RANK for "ranks started externally" and wait for a rank 1 that nobody starts
    for key in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(key, None)


def guarded_run(cfg: DictConfig, out: Path, train_fn: Callable[[DictConfig], float]) -> float:
    """`train_fn(cfg)` with the bookkeeping of this module: the run-dir lock, skip, failure and
    interruption records, and the job's outcome for SweepSummary. A failing or refused run returns NaN
    where swallow_failures() says so, else raises; SIGTERM ends the process (SystemExit)."""
    try:
        with run_dir_lock(out):
            return _run_locked(cfg, out, train_fn)
    except Exception as err:
        refused = isinstance(err, (RunDirConflict, RunDirLocked))
        reason = first_line(err, typed=True)
        record_outcome(out, REFUSED if refused else FAILED, reason)
        if not swallow_failures():
            raise
        if refused:  # our own one-line message; nothing ran
            log.error("job refused: %s", err)
        else:
            log.exception("run failed; the sweep goes on")
        return float("nan")


def _run_locked(cfg: DictConfig, out: Path, train_fn: Callable[[DictConfig], float]) -> float:
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        done = completed_value(cfg, out)
    except RunDirConflict:
        run_snapshot.restore(out)  # the completed run there stays as it was, .hydra/ and log too
        raise
    if done is not None:
        record_outcome(out, SKIPPED, "completed already")
        run_snapshot.restore(out)  # Hydra rewrote .hydra/ and appended to the log before this job ran
        return done
    try:
        value = train_fn(cfg)
    except SIGTERMException:  # Lightning's: SIGTERM arrived during fit or validation
        record_interrupted(cfg, out)
        if os.environ.get("SUBMITIT_EXECUTOR"):
            raise  # under submitit, requeueing is submitit's (docs/sweeps.md, "Signals")
        # exit like a process killed by SIGTERM (Lightning's own exit status would be 0)
        raise SystemExit(SIGTERM_EXIT) from None
    except Exception as err:
        record_failure(cfg, out, err)
        raise
    record_outcome(out, COMPLETED)
    return value


def record_outcome(out: Path, outcome: str, reason: str = "") -> None:
    """In a multirun launched with SweepSummary: note what this job did in this launch."""
    from lightning.pytorch.utilities import rank_zero_only

    launch = os.environ.get(LAUNCH_ENV)
    if not launch or not is_multirun() or rank_zero_only.rank != 0:
        return
    sweep = Path(HydraConfig.get().sweep.dir)
    job = os.path.relpath(out, sweep)
    folder = sweep / ".outcomes" / launch
    folder.mkdir(parents=True, exist_ok=True)
    record = {"job": job, "outcome": outcome, "reason": reason}
    (folder / f"{job.replace(os.sep, '__')}.json").write_text(json.dumps(record))


class SweepSummary(HydraCallback):
    """Hydra callback: when a multirun ends, say what each job did in *this* launch (completed,
    skipped as completed already, refused, failed, interrupted), name the ones that did not complete
    with the reason, and exit with status 1 if any did not (unless sweep_fail_exit=false).

    Jobs report through files (sweet_lightning.runs.record_outcome): under submitit they run in
    other processes, on other nodes, and a sweep dir may hold results of earlier launches."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ[LAUNCH_ENV] = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{os.urandom(3).hex()}"

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        launch = os.environ.pop(LAUNCH_ENV, None)
        sweep = Path(config.hydra.sweep.dir)
        records = []
        for path in sorted((sweep / ".outcomes" / launch).glob("*.json")) if launch else []:
            try:
                records.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                records.append({"job": path.stem, "outcome": "unreadable", "reason": str(path)})
        counts = {o: sum(r["outcome"] == o for r in records) for o in (*OUTCOMES, "unreadable")}
        shown = ", ".join(f"{n} {o}" for o, n in counts.items() if n) or "no job reported an outcome"
        log.info("sweep %s, this launch: %s", sweep, shown)
        if not records:  # e.g. jobs started without this process's environment (SWEET_LAUNCH_ID)
            log.warning("no job of this launch reported what it did: see the jobs' results.json")
        bad = [r for r in records if r["outcome"] not in (COMPLETED, SKIPPED)]
        for r in bad:
            log.warning("%s job: %s: %s", r["outcome"], sweep / r["job"], r["reason"])
        if bad and config.get("sweep_fail_exit", True):
            log.error(
                "%d of %d jobs did not complete: exit status 1 (sweep_fail_exit=false exits 0)",
                len(bad),
                len(records),
            )
            sys.exit(1)
