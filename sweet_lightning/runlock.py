"""One writer per run dir: `<run dir>/.lock` names the process that is training there.

Two sweeps launched into one `hydra.sweep.dir` (or a run re-started while it still runs) would
otherwise train the same job twice in one folder, each overwriting the other's checkpoints and
results. The lock is a file created atomically (a complete temporary file hard-linked to `.lock`,
which fails when `.lock` exists, also on NFS); it holds the pid, host, start time and Slurm job
of its holder and is removed when the run ends, however it ends.

A lock whose holder is gone is taken over with a warning: same host and that pid no longer runs,
or same Slurm job id (a requeued job, perhaps on another node). A lock held from another host
cannot be checked from here: the message says which file to delete when that process is gone.
Only the launching process (DDP rank 0) takes the lock; the ranks it starts run in the same folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class RunDirLocked(RuntimeError):
    """Another live process is writing this run dir."""


def _me() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        "slurm_job": os.environ.get("SLURM_JOB_ID"),
    }


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def stale_reason(holder: dict | None) -> str | None:
    """Why the lock of `holder` can be taken over, or None when its holder may still be writing."""
    if holder is None:
        return "unreadable lock file"
    me = _me()
    if holder.get("slurm_job") and holder["slurm_job"] == me["slurm_job"]:
        return f"held by an earlier run of this Slurm job ({me['slurm_job']}, requeued)"
    if holder.get("host") == me["host"]:
        pid = int(holder.get("pid", -1))
        if pid == me["pid"]:
            return "left by this process"
        try:
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return f"its process {pid} no longer runs"
        except PermissionError:  # it runs, as another user
            pass
    return None


def _link_new(lock: Path, me: dict) -> bool:
    """Create `lock` holding `me`, atomically; False when it exists."""
    tmp = lock.with_name(f"{LOCK_NAME}.{me['host']}.{me['pid']}")
    tmp.write_text(json.dumps(me))
    try:
        os.link(tmp, lock)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _take_over(lock: Path, holder: dict | None) -> bool:
    """Move the stale lock aside; False when another process replaced it meanwhile (then it is theirs)."""
    aside = lock.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return True  # someone removed it: try to create ours
    same = _read(aside) == holder
    if not same:  # not the lock we judged stale: give it back
        with contextlib.suppress(FileExistsError):
            os.link(aside, lock)
    aside.unlink(missing_ok=True)
    return same


def acquire(out: Path) -> Path:
    """Take the lock of run dir `out`, or raise RunDirLocked naming its holder."""
    out.mkdir(parents=True, exist_ok=True)
    lock = out / LOCK_NAME
    me = _me()
    for _ in range(3):
        if _link_new(lock, me):
            return lock
        holder = _read(lock)
        reason = stale_reason(holder)
        if reason is None:
            break
        log.warning("taking over the lock of %s: %s (%s)", out, reason, holder)
        if not _take_over(lock, holder):
            break
    holder = _read(lock) or {}
    raise RunDirLocked(
        f"{out} is in use by process {holder.get('pid', '?')} on {holder.get('host', '?')} "
        f"(since {holder.get('since', '?')}); wait for it to end, or if that process is gone, delete {lock}."
    )


def release(lock: Path) -> None:
    holder = _read(lock) or {}
    if (holder.get("pid"), holder.get("host")) == (os.getpid(), socket.gethostname()):
        lock.unlink(missing_ok=True)


@contextlib.contextmanager
def run_dir_lock(out: Path) -> Iterator[None]:
    """Hold the lock of `out` while the body runs (DDP ranks > 0: no lock, rank 0 holds it)."""
    from lightning.pytorch.utilities import rank_zero_only

    lock = acquire(out) if rank_zero_only.rank == 0 else None
    try:
        yield
    finally:
        if lock is not None:
            release(lock)
