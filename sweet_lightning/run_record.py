"""The run record: what one training run leaves in its run dir, and the only code that reads or
writes `results.json` (fields in README, "Outputs").

A run dir holds `results.json` (this record) and, for a completed run, `logits_<split>.npz` per
evaluated split (per-exit logits [E, N, C], labels [N], learned exit scores [E, N] when trained).
Training writes it (train.write_results), and so do a failed or interrupted run (runs.py); resume and
skip, `evaluate`, the inference loader, the report, `reproduce` and W&B read it.

Older records load: version 1 (no `schema_version` key) also kept each exit's score under
`splits.<split>.exits`, which readers no longer use (`evaluation` has them); versions 1 and 2 named
the cost model `kind` (top level and in each `evaluation.<split>`), read here as `cost_model`.
No Lightning import here: the report reads records without it.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 3  # 1: no schema_version key, per-exit scores stored twice; 1-2: `kind` for cost_model
RESULTS_FILE = "results.json"
CALIBRATION_SPLIT = "calibration"  # examples held out of the training pool (calibration=train_holdout)
COMPLETED, FAILED, INTERRUPTED = "completed", "failed", "interrupted"


def logits_file(split: str) -> str:
    return f"logits_{split}.npz"


class RecordError(ValueError):
    """A results.json that cannot be used: `problem` says why (callers add the fix that fits them)."""

    def __init__(self, path: Path, problem: str, fix: str | None = None):
        super().__init__(f"{path} {problem}" + (f"; {fix}." if fix else "."))
        self.path, self.problem = path, problem


@dataclass(frozen=True)
class EvalSpec:
    """What evaluating saved logits needs to know of a run: its task, where its exits are and how
    their cost counts (`cost_model`: "early_exit" reuses layers, "cascade" re-runs them; paper eq. 1)."""

    task: str
    exit_layers: tuple[int, ...]
    num_layers: int
    cost_model: str


@dataclass
class RunRecord:
    status: str | None = COMPLETED  # None: a record from before statuses (completed, by the report's reading)
    config: dict = field(default_factory=dict)
    method: str | None = None
    task: str | None = None
    model: str | None = None
    pretrained: str | None = None
    exit_layers: list[int] | None = None
    num_layers: int | None = None
    cost_model: str | None = None
    exit_pooling: str | None = None
    seed: int | None = None
    lr: float | None = None
    train_size: int | None = None
    train_examples: int | None = None
    max_epochs: int | None = None
    batch_size: int | None = None
    metric: str | None = None
    primary_split: str | None = None
    exit_policy: str | None = None
    calibration: dict | None = None  # {"source": train_holdout | dev, "size": examples}
    temperatures: list[float] | None = None  # per exit, fitted on the calibration split
    splits: dict[str, dict] = field(default_factory=dict)  # eval split -> {"num_examples", "logits"}
    evaluation: dict[str, dict] = field(default_factory=dict)  # split -> evaluate_logits report
    collapsed_exits: list[dict] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)  # metrics.run_metrics names
    selection: dict | None = None  # model_selection.ModelSelection.record
    environment: dict | None = None
    train_time_s: float | None = None
    checkpoint: str | None = None
    error: str | None = None  # failed / interrupted runs
    traceback: str | None = None
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # keys of another version, kept as they are
    path: Path | None = field(default=None, compare=False, repr=False)  # where it was loaded from

    @classmethod
    def from_dict(cls, data: dict) -> RunRecord:
        version = data.get("schema_version", 1)
        if not isinstance(version, int) or version < 3:  # versions 1-2 named the cost model `kind`
            data = _kind_as_cost_model(data)
            if isinstance(data.get("evaluation"), dict):
                data["evaluation"] = {
                    split: _kind_as_cost_model(ev) if isinstance(ev, dict) else ev
                    for split, ev in data["evaluation"].items()
                }
        known = {f.name for f in fields(cls)} - {"extra", "path"}
        # a record without these keys is from before statuses (status None) and versions (version 1)
        kept = {"status": None, "schema_version": 1, **{k: v for k, v in data.items() if k in known}}
        return cls(**kept, extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k not in ("extra", "path")}
        if self.status in (FAILED, INTERRUPTED):  # what happened, and the config
            keep = ("schema_version", "status", "error", "traceback", "checkpoint", "config")
            # an interrupted run names the checkpoint to resume from, null when no epoch ended
            data = {
                k: data[k]
                for k in keep
                if data[k] is not None or (k == "checkpoint" and self.status == INTERRUPTED)
            }
        return {**data, **self.extra}

    def save(self, run_dir: Path) -> Path:
        path = Path(run_dir) / RESULTS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        return path

    @classmethod
    def load(cls, run_dir: Path) -> RunRecord:
        """The record of a run dir; FileNotFoundError without one, RecordError for an unusable one."""
        path = Path(run_dir) / RESULTS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: give a run directory written by launch.py.")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:  # a truncated file; bytes that are not UTF-8 land here too
            reason = err.msg if isinstance(err, json.JSONDecodeError) else "not UTF-8 text"
            raise RecordError(path, f"is not valid JSON ({reason})", fix="re-run training") from err
        if not isinstance(data, dict) or not isinstance(data.get("status"), (str, type(None))):
            raise RecordError(path, "is not a results.json written by launch.py")
        record = cls.from_dict(data)
        record.path = path
        return record

    @classmethod
    def read_completed(cls, run_dir: Path) -> RunRecord | None:
        """The record of a completed run in `run_dir`; None when it has none, an unreadable one, or the
        run did not complete (what a re-launch keeps and snapshots)."""
        try:
            record = cls.load(run_dir)
        except (FileNotFoundError, RecordError):
            return None
        return record if record.completed else None

    @property
    def completed(self) -> bool:
        return self.status == COMPLETED

    def eval_spec(self) -> EvalSpec:
        missing = [k for k in ("task", "exit_layers", "num_layers", "cost_model") if getattr(self, k) is None]
        if missing:
            problem = f"is not a results.json written by launch.py (no {', '.join(missing)})"
            raise RecordError(self.path or Path(RESULTS_FILE), problem)
        return EvalSpec(self.task, tuple(self.exit_layers), int(self.num_layers), self.cost_model)

    def saved_logits(self, run_dir: Path) -> dict[str, dict[str, np.ndarray]]:
        """The saved outputs of every evaluated split, and of the calibration split when saved."""
        names = list(self.splits)
        if (Path(run_dir) / logits_file(CALIBRATION_SPLIT)).exists():
            names.append(CALIBRATION_SPLIT)
        return {split: load_logits(run_dir, split) for split in names}


def _kind_as_cost_model(data: dict) -> dict:
    return {("cost_model" if k == "kind" else k): v for k, v in data.items()}


def flatten(tree: dict, prefix: str = "", *, empty_groups: bool = False) -> dict[str, Any]:
    """A record's or config's values by dotted key. An empty group leaves no key, unless
    `empty_groups`: the skip check must tell a group set to {} from a group that is missing."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and (value or not empty_groups):
            flat.update(flatten(value, f"{prefix}{key}.", empty_groups=empty_groups))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def save_logits(run_dir: Path, split: str, arrays: dict[str, np.ndarray]) -> str:
    name = logits_file(split)
    np.savez_compressed(Path(run_dir) / name, **arrays)
    return name


def load_logits(run_dir: Path, split: str) -> dict[str, np.ndarray]:
    path = Path(run_dir) / logits_file(split)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: this run saved no logits for {split!r}; re-run training."
        )
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:  # truncated or overwritten file
        raise ValueError(
            f"{path} is not a readable logits file ({type(err).__name__}); re-run training."
        ) from err


def find_run_dirs(roots: Iterable[Path]) -> list[Path]:
    """Every run directory under the roots (a root may itself be one), sorted, without repeats."""
    found: set[Path] = set()
    for root in roots:
        for current, dirs, files in os.walk(root):
            here = Path(current)
            if RESULTS_FILE in files or ".hydra" in dirs:
                found.add(here.resolve())
                dirs.clear()  # checkpoints and logger folders below a run are not runs
            else:
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return sorted(found)
