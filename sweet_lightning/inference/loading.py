"""Find what a trained model needs at inference: its checkpoint, method, temperatures, policy.

Accepted sources (docs/inference.md, "Loading"):
- a run dir (what `launch.py` writes): `results.json` names the checkpoint, the fitted per-exit
  temperatures, the exit policy and the precision the run trained and evaluated in
  (`config.trainer.precision`); `logits_calibration.npz` (else the primary dev split's logits)
  can pick a threshold for a target speedup.
- a bare Lightning `.ckpt`: temperatures are 1 and the policy is confidence. The method and
  the precision are read from `checkpoint["sweet_lightning"]` (written by `AdaptiveModule`); for
  older checkpoints `_method_of` tells the method from the state dict. Every early-exit-style
  method differs from the others only in training, so their inference is the same either way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sweet_lightning.cli import first_line
from sweet_lightning.methods import METHODS
from sweet_lightning.methods.base import AdaptiveModule
from sweet_lightning.run_record import CALIBRATION_SPLIT, RecordError, RunRecord, load_logits, logits_file
from sweet_lightning.tasks import TaskSpec, get_task


class SourceError(ValueError):
    """A run dir or checkpoint that cannot be used (one-line message naming the fix)."""


@dataclass(frozen=True)
class Calibration:
    """Cached per-exit outputs of a labelled split, for choosing a threshold offline."""

    logits: np.ndarray  # [E, N, C]
    labels: np.ndarray  # [N]
    exit_scores: np.ndarray | None  # [E, N] sigmoid scores, when the model has learned exits
    source: str  # file it came from


@dataclass(frozen=True)
class RunSource:
    checkpoint: Path
    method: str
    task: TaskSpec
    pretrained: str
    temperatures: list[float] | None
    policy: str
    run_dir: Path | None
    max_length: int | None  # tokenisation length used in training, when known
    precision: str | None = None  # Lightning's trainer.precision of the run, when known

    def bf16(self) -> bool:
        """Whether inference should run under bf16 autocast to match the run's precision.

        Lightning's "bf16-mixed" is bf16 autocast, exactly what the engine's bf16 does; other
        bf16 modes are closest to it. A float16 run has no engine counterpart: float32, said so.
        """
        precision = str(self.precision or "32").lower()
        if precision.startswith("bf16"):
            return True
        if precision.startswith("16") or precision == "half":
            warnings.warn(
                f"the run used precision {self.precision}, which inference does not offer: running float32 "
                "(pass bf16=true for bf16)",
                stacklevel=2,
            )
        return False

    def calibration_split(self) -> str | None:
        """The split whose saved logits choose a threshold for a target: the calibration hold-out,
        else the primary dev split, else None (a bare .ckpt, or no logits saved)."""
        splits = (CALIBRATION_SPLIT, self.task.eval_splits[0]) if self.run_dir is not None else ()
        return next((s for s in splits if (self.run_dir / logits_file(s)).exists()), None)


def load_calibration(run_dir: Path, split: str) -> Calibration:
    arrays = load_logits(run_dir, split)
    return Calibration(
        arrays["logits"], arrays["labels"], arrays.get("exit_scores"), str(run_dir / logits_file(split))
    )


def resolve_source(path: str | Path) -> RunSource:
    """Read a run dir or a `.ckpt` without building the model (cheap; used to validate early)."""
    path = Path(path)
    if path.is_dir():
        return _from_run_dir(path)
    if path.is_file():
        return _from_checkpoint_file(path)
    raise SourceError(
        f"no run dir or checkpoint at {str(path)!r}: give a run dir (with results.json) or a .ckpt file"
    )


def _from_checkpoint_file(
    path: Path, record: RunRecord | None = None, run_dir: Path | None = None
) -> RunSource:
    try:
        # mmap: only the small metadata is read now; weights stay on disk until the module loads
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        raise SourceError(
            f"{str(path)!r} is not a readable Lightning checkpoint ({type(err).__name__})"
        ) from err
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, dict) or "task" not in hparams or "state_dict" not in ckpt:
        raise SourceError(
            f"{str(path)!r} has no sweet_lightning hyperparameters: give a checkpoint written by launch.py"
        )
    record = record or RunRecord()  # a bare .ckpt: no record, the checkpoint says what it can
    method = _method_of(ckpt, record.method)
    if method not in METHODS:
        raise SourceError(
            f"unknown method {method!r} for {str(path)!r}: expected one of {', '.join(METHODS)}"
        )
    config = _mapping(record.config)
    max_length = config.get("max_seq_length")
    if not max_length:  # a bare .ckpt: Lightning keeps the datamodule's arguments beside the weights
        max_length = _mapping(ckpt.get("datamodule_hyper_parameters")).get("max_seq_length")
    precision = _mapping(config.get("trainer")).get("precision")
    if precision is None:
        precision = _mapping(ckpt.get("sweet_lightning")).get("precision")
    return RunSource(
        checkpoint=path,
        method=method,
        task=get_task(hparams["task"]),
        pretrained=str(hparams["pretrained"]),
        temperatures=[float(t) for t in record.temperatures] if record.temperatures else None,
        policy=str(record.exit_policy or "confidence"),
        run_dir=run_dir,
        max_length=int(max_length) if max_length else None,
        precision=str(precision) if precision is not None else None,
    )


def _mapping(value) -> dict:
    """`value` when it is a dict, else {} (a record or checkpoint without that entry)."""
    return value if isinstance(value, dict) else {}


def _method_of(ckpt: dict, run_method: str | None = None) -> str:
    """The class to load the checkpoint with: the one it records, else the run's method name (older
    checkpoints), else a guess from the state dict. The record comes first because a run's name may
    be a preset of a class (weighted_early_exit) or carry a parameter (sweet_alpha0.25)."""
    stored = _mapping(ckpt.get("sweet_lightning"))
    if stored.get("method"):
        return str(stored["method"])
    if run_method:
        return str(run_method)
    if any(key.startswith("net.members.") for key in ckpt["state_dict"]):
        return "cascade"
    # in checkpoints that do not record their method only SWEET had `shared_pooler` (Early-Exit took
    # it later, and from then on checkpoints record the method)
    return "sweet" if "shared_pooler" in ckpt["hyper_parameters"] else "early_exit"


def _from_run_dir(run_dir: Path) -> RunSource:
    try:
        record = RunRecord.load(run_dir)
    except FileNotFoundError as err:
        message = f"{str(run_dir)!r} has no results.json: give a finished run dir or a .ckpt file"
        raise SourceError(message) from err
    except RecordError as err:
        fix = "rerun or give the .ckpt" if "JSON" in err.problem else "give the .ckpt"
        raise SourceError(f"{str(err.path)!r} {err.problem}: {fix}") from err
    candidates = []
    if record.checkpoint:
        ckpt = Path(record.checkpoint)
        # as recorded (run_dir / an absolute path is that path), then in a run dir moved since training
        candidates += [ckpt, run_dir / ckpt, run_dir / "checkpoints" / ckpt.name]
    candidates.append(run_dir / "checkpoints" / "best.ckpt")
    candidates = list(dict.fromkeys(candidates))  # the same path may arise twice: list it once
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise SourceError(
            f"{str(run_dir)!r}: checkpoint not found (tried {', '.join(map(str, candidates))}); "
            "train with callbacks=default keep_checkpoints=true or give the .ckpt"
        )
    return _from_checkpoint_file(found, record, run_dir)


def load_module(source: RunSource, device: str | torch.device = "cpu") -> AdaptiveModule:
    """The trained LightningModule in eval mode on `device`."""
    cls = METHODS[source.method]
    try:
        module = cls.load_from_checkpoint(source.checkpoint, map_location=device, weights_only=False)
    except RuntimeError as err:  # e.g. state dict of another method or architecture
        raise SourceError(
            f"cannot load {str(source.checkpoint)!r} as {source.method}: {first_line(err)}"
        ) from err
    return module.eval()
