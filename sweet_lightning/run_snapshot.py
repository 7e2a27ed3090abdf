"""A completed run dir that a re-launch skips (or refuses) is left byte for byte as it was.

Hydra's `run_job` writes `<run dir>/.hydra/{config,hydra,overrides}.yaml` and opens the job's log,
`<run dir>/launch.log` (appended to), before any callback's `on_job_start` and before the task
function; only then does sweet_lightning.runs find the run completed already. Without this module a
re-launch would leave the new command's config beside results computed with the old one, and the
committed run dirs (results/) would change at every re-launch.

So the Hydra callback `KeepSkippedRunsIntact`, before any job starts, copies the `.hydra/` folder and
notes the length of every `*.log` of each completed run dir under the sweep dir (for a single run:
its run dir). A job that skips its run dir, or refuses one holding a completed run of another
configuration, calls `restore` from inside the task function: it takes the job's log file off the
loggers (what the job logs next goes to the console only), cuts that file back to its noted length
and puts the saved `.hydra/` back. Runs that train never read the snapshot.

Under submitit the jobs are other processes, perhaps on other nodes: the snapshot is a folder in the
sweep dir, `<sweep dir>/.snapshots/<launch>/` (the filesystem is shared; gitignored), named to the
jobs by the environment variable SNAPSHOT_ENV, which they inherit. A single run's goes to the
temporary directory. The launch removes it when it ends.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig

from sweet_lightning.run_record import RunRecord, find_run_dirs

SNAPSHOT_ENV = "SWEET_SKIP_SNAPSHOT"  # the folder of this launch's snapshot
SNAPSHOTS = ".snapshots"  # in the sweep dir
MANIFEST = "manifest.json"


def _entry(folder: Path, run_dir: Path) -> Path:
    # by the resolved path: the launcher and its jobs may name the run dir from different cwds
    return folder / hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:24]


def take(run_dirs: Iterable[Path], folder: Path, config_subdir: str | None) -> None:
    """Save into `folder` what Hydra rewrites in each of `run_dirs` when it starts a job there."""
    for run_dir in run_dirs:
        entry = _entry(folder, run_dir)
        entry.mkdir(parents=True, exist_ok=True)
        logs = {}
        for path in run_dir.rglob("*.log"):
            stat = path.stat()
            logs[str(path.relative_to(run_dir))] = [stat.st_size, stat.st_mtime_ns]
        if config_subdir is not None and (run_dir / config_subdir).is_dir():  # with its times (copy2)
            shutil.copytree(run_dir / config_subdir, entry / "config")
        manifest = {"run_dir": str(run_dir), "logs": logs, "config_subdir": config_subdir}
        (entry / MANIFEST).write_text(json.dumps(manifest))


def restore(out: Path) -> bool:
    """Put back what this launch's Hydra changed in the run dir `out`, as the snapshot saved it; False
    when there is none of `out` (not launched by launch.py, or the run completed after this launch began)."""
    folder = os.environ.get(SNAPSHOT_ENV)
    entry = _entry(Path(folder), out) if folder else None
    if entry is None or not (entry / MANIFEST).is_file():
        return False
    manifest = json.loads((entry / MANIFEST).read_text())
    for path in _detach_file_handlers(out):
        noted = manifest["logs"].get(str(path.relative_to(out.resolve())))
        if noted is None:  # the log file did not exist before this launch: Hydra's handler made it
            path.unlink(missing_ok=True)
            continue
        size, mtime_ns = noted
        if path.stat().st_size < size:  # not appended to but rewritten: not ours to undo
            continue
        with open(path, "r+b") as file:
            file.truncate(size)
        os.utime(path, ns=(mtime_ns, mtime_ns))
    if manifest["config_subdir"] is not None:
        shutil.rmtree(out / manifest["config_subdir"], ignore_errors=True)
        if (entry / "config").is_dir():  # else the run dir had no such folder: this launch made it
            shutil.copytree(
                entry / "config", out / manifest["config_subdir"], dirs_exist_ok=True
            )  # times too, as saved
    return True


def _detach_file_handlers(out: Path) -> list[Path]:
    """Take the log handlers that write into `out` off every logger and close them; their files.

    Taken off, not only closed: a closed FileHandler that still gets a record opens its file again.
    """
    root = out.resolve()
    files = set()
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in list(getattr(logger, "handlers", [])):  # a logging.PlaceHolder has none
            if not isinstance(handler, logging.FileHandler):
                continue
            path = Path(handler.baseFilename).resolve()
            if root in path.parents:
                logger.removeHandler(handler)
                handler.close()
                files.add(path)
    return sorted(files)


def _drop(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    if folder.parent.name == SNAPSHOTS:  # the sweep's .snapshots/, once no launch uses it
        with contextlib.suppress(OSError):
            folder.parent.rmdir()


class KeepSkippedRunsIntact(HydraCallback):
    """Hydra callback: snapshot the completed run dirs before any job starts (see the module doc);
    remove the snapshot when the launch ends, or, should it end with an error, when the process exits."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(config.hydra.run.dir)
        self._start([run_dir] if RunRecord.read_completed(run_dir) else [], None, config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        self._start(
            [d for d in find_run_dirs([sweep]) if RunRecord.read_completed(d)], sweep / SNAPSHOTS, config
        )

    def _start(self, run_dirs: list[Path], parent: Path | None, config: DictConfig) -> None:
        self.folder = None
        # only this launch's snapshot (a DDP rank's process inherits its launcher's environment)
        os.environ.pop(SNAPSHOT_ENV, None)
        if not run_dirs:
            return
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="launch-", dir=parent))
        take(run_dirs, self.folder, config.hydra.output_subdir)
        os.environ[SNAPSHOT_ENV] = str(self.folder.resolve())
        atexit.register(_drop, self.folder)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ.pop(SNAPSHOT_ENV, None)
        if getattr(self, "folder", None) is not None:
            _drop(self.folder)
            atexit.unregister(_drop)

    on_multirun_end = on_run_end
