"""Find run directories under sweep folders, load each as a Run of status completed, failed, missing
or incomplete, and refuse to average runs that differ in more than lr and seed (`mixed_config_problems`).
The statuses and the settings compared: docs/report.md ("Run status", "Mixed configurations").
Nothing is dropped here: every directory found ends up in runs.csv, unless `split_methods` leaves
its method out (`--methods`).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sweet_lightning.evaluation import CurvePoint, SpeedAccuracyCurve, auc, evaluate_logits
from sweet_lightning.run_record import (
    CALIBRATION_SPLIT,
    COMPLETED,
    FAILED,
    RESULTS_FILE,
    RecordError,
    RunRecord,
    flatten,
    load_logits,
    logits_file,
)

STATUSES = ("completed", "failed", "missing", "incomplete")
IDENTITY = ("method", "model", "task", "lr", "seed")
# config paths compared within a (method, model, task) group on top of the results.json keys
CONFIG_PREFIXES = (
    "method.",
    "model.",
    "optimizer.",
    "scheduler.",
    "max_seq_length",
    "trainer.precision",
    "trainer.accumulate_grad_batches",
    "trainer.gradient_clip_val",
)
# swept or already compared as a top-level key
CONFIG_IGNORED = ("optimizer.lr", "model.exit_layers", "model.exit_pooling", "method._target_")
MODEL_KEYS = (
    "exit_layers",
    "num_layers",
    "exit_pooling",
    "max_epochs",
    "train_size",
    "batch_size",
    "exit_policy",
    "calibration_source",
    "model_selection",
)


@dataclass
class Run:
    path: Path
    status: str
    method: str | None = None
    model: str | None = None
    task: str | None = None
    lr: float | None = None
    seed: int | None = None
    split: str | None = None
    settings: dict = field(default_factory=dict)  # what must agree before runs are averaged
    individual_scores: dict[int, float] = field(default_factory=dict)  # layer -> the exit's score alone
    curve: SpeedAccuracyCurve | None = None
    auc: float | None = None
    # AUC on the calibration hold-out (None: no hold-out, or an older run)
    calibration_auc: float | None = None
    collapsed: tuple[tuple[str, int], ...] = ()  # (split, layer)
    error: str = ""
    note: str = ""

    @property
    def group(self) -> tuple[str, str, str]:
        return (str(self.method), str(self.model), str(self.task))


def dig(tree: object, dotted: str) -> object:
    for key in dotted.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _identity(record: RunRecord | None, config: dict) -> dict:
    fallback = {name: dig(config, f"{name}.name") for name in ("method", "model", "task")}
    fallback.update(lr=config.get("lr"), seed=config.get("seed"))
    ident = {key: _stored(record, key, fallback[key]) for key in IDENTITY}
    ident["lr"] = _as_float(ident["lr"])
    seed = _as_float(ident["seed"])
    ident["seed"] = None if seed is None else int(seed)
    return ident


def _stored(record: RunRecord | None, key: str, fallback: object) -> object:
    """The record's value of `key`, else (older records lack some keys) the config's."""
    value = getattr(record, key, None)
    return fallback if value is None else value


def _as_float(value: object) -> float | None:
    # Hydra configs may hold "2e-5" as a string (YAML 1.1 wants a dot in a float)
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _hydra_config(path: Path) -> dict:
    try:
        config = yaml.safe_load((path / ".hydra" / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}


def load_run(path: Path, split: str | None = None) -> Run:
    """One run dir as the report reads it: its evaluation of `split` (default: the run's primary split,
    dev or MNLI's dev_matched), recomputed from logits_<split>.npz when results.json lacks it."""
    try:
        record = RunRecord.load(path)
    except FileNotFoundError:
        return Run(path, "missing", **_identity(None, _hydra_config(path)), note=f"no {RESULTS_FILE}")
    except RecordError as err:
        ident = _identity(None, _hydra_config(path))
        return Run(path, "incomplete", **ident, note=f"unreadable {RESULTS_FILE}: {err}")
    config = record.config or _hydra_config(path)
    ident = _identity(record, config)
    status = record.status or COMPLETED  # the earliest records had no status
    if status == FAILED:
        return Run(path, "failed", **ident, error=str(record.error or "").strip())
    if status != COMPLETED:
        return Run(path, "incomplete", **ident, note=f"status {status!r}")
    absent = [key for key in IDENTITY if ident[key] is None]
    if absent:
        return Run(path, "incomplete", **ident, note=f"{RESULTS_FILE} lacks {', '.join(absent)}")
    try:
        return _completed_run(path, record, config, ident, split)
    except (KeyError, TypeError, ValueError, OSError) as err:
        return Run(path, "incomplete", **ident, note=f"unusable {RESULTS_FILE}: {type(err).__name__}: {err}")


def _completed_run(path: Path, record: RunRecord, config: dict, ident: dict, split: str | None) -> Run:
    evaluations = record.evaluation or {}
    split = split or record.primary_split or next(iter(evaluations), "dev")
    evaluation, note = evaluations.get(split), ""
    if evaluation is None:
        evaluation, note = _recompute(path, record, split)
        if evaluation is None:
            return Run(path, "incomplete", **ident, split=split, note=note)
    curve = SpeedAccuracyCurve(
        exit_layers=tuple(int(x) for x in record.exit_layers or evaluation["exit_layers"]),
        num_layers=int(record.num_layers or evaluation["num_layers"]),
        cost_model=record.cost_model or evaluation.get("cost_model") or "early_exit",
        metric=record.metric or evaluation.get("metric") or "accuracy",
        policy=str(evaluation.get("policy")),
        points=tuple(
            CurvePoint(float(p["threshold"]), float(p["speedup"]), float(p["score"]), ())
            for p in evaluation.get("curve") or []
        ),
    )
    if not curve.points:
        return Run(path, "incomplete", **ident, split=split, note=f"evaluation of {split} has no curve")
    run_auc = evaluation.get("auc")
    calibration_auc = dig(evaluations, f"{CALIBRATION_SPLIT}.auc")
    return Run(
        path,
        "completed",
        **ident,
        split=split,
        settings=_settings(record, config, evaluation, split, curve),
        individual_scores={int(e["layer"]): float(e["score"]) for e in evaluation.get("exits") or []},
        curve=curve,
        auc=float(run_auc) if run_auc is not None else auc(curve),
        calibration_auc=float(calibration_auc) if calibration_auc is not None else None,
        collapsed=_collapsed(record, {split: evaluation}),
        note=note,
    )


def _recompute(path: Path, record: RunRecord, split: str) -> tuple[dict | None, str]:
    """Older results.json files have logits but no evaluation: rebuild it the way training would."""
    name = logits_file(split)
    if not (path / name).exists():
        return None, f"no evaluation for {split} and no {name}"
    arrays = load_logits(path, split)
    evaluation = evaluate_logits(
        arrays["logits"],
        arrays["labels"],
        record.exit_layers,
        record.num_layers,
        cost_model=record.cost_model or "early_exit",
        metric=record.metric or "accuracy",
        policy=record.exit_policy or "confidence",
        temperatures=record.temperatures,
    )
    scaling = "its temperatures" if record.temperatures is not None else "no temperature scaling"
    return evaluation, f"evaluation recomputed from {name} ({scaling})"


def _settings(
    record: RunRecord, config: dict, evaluation: dict, split: str, curve: SpeedAccuracyCurve
) -> dict:
    settings = {
        "exit_layers": curve.exit_layers,  # compared as JSON text, where a tuple is a list
        "num_layers": curve.num_layers,
        "cost_model": curve.cost_model,
        "metric": curve.metric,
        "primary_split": split,
        "exit_pooling": _stored(record, "exit_pooling", dig(config, "model.exit_pooling")),
        "max_epochs": _stored(record, "max_epochs", dig(config, "trainer.max_epochs")),
        "train_size": _stored(record, "train_size", config.get("train_size")),
        "batch_size": _stored(record, "batch_size", config.get("batch_size")),
        "exit_policy": record.exit_policy or evaluation.get("policy"),
        "calibration_source": dig(record.calibration, "source"),
        # how each run chose its epoch (absent: a run from before model_selection, best on dev)
        "model_selection": dig(record.selection, "rule"),
    }
    for key, value in flatten(config).items():
        if key.startswith(CONFIG_PREFIXES) and key not in CONFIG_IGNORED and not key.endswith(".name"):
            settings[f"config.{key}"] = value
    return settings


def _collapsed(record: RunRecord, primary: dict) -> tuple[tuple[str, int], ...]:
    """Flags from `collapsed_exits` and from every evaluated split's exits (recomputed one included)."""
    flags = {(str(c.get("split", "?")), int(c["layer"])) for c in record.collapsed_exits or []}
    for split, evaluation in {**(record.evaluation or {}), **primary}.items():
        if split == CALIBRATION_SPLIT:  # it only selects; flags are about reported splits
            continue
        flags.update((split, int(e["layer"])) for e in evaluation.get("exits", []) if e.get("collapsed"))
    return tuple(sorted(flags))


# ---- which methods to report ---------------------------------------------------------------------
def split_methods(runs: Sequence[Run], methods: Sequence[str] | None) -> tuple[list[Run], list[Run]]:
    """(kept, left out): the runs of `methods` (None: all) and those of other known methods. A run
    whose method could not be read (neither results.json nor .hydra/config.yaml names it) is kept,
    so a broken run is never hidden by the filter."""
    if methods is None:
        return list(runs), []
    kept = [run for run in runs if run.method is None or run.method in methods]
    return kept, [run for run in runs if run.method is not None and run.method not in methods]


# ---- may these runs be averaged? ----------------------------------------------------------------
def _differing(runs: Sequence[Run], keys: Iterable[str]) -> dict[str, list[str]]:
    values: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        for key in keys:
            # json text compares lists and dicts by value; a key absent from a run counts as null
            values[key].add(json.dumps(run.settings.get(key), sort_keys=True, default=str))
    return {key: sorted(found) for key, found in values.items() if len(found) > 1}


def _describe(diffs: dict[str, list[str]]) -> str:
    return ", ".join(f"{key} ({' vs '.join(values)})" for key, values in sorted(diffs.items()))


def mixed_config_problems(runs: Sequence[Run]) -> list[str]:
    """One short description per group that should not be averaged; empty when all is consistent."""
    completed = [run for run in runs if run.status == "completed"]
    groups: dict[tuple[str, str, str], list[Run]] = defaultdict(list)
    by_model: dict[str, list[Run]] = defaultdict(list)
    for run in completed:
        groups[run.group].append(run)
        by_model[str(run.model)].append(run)
    problems = []
    reported: dict[str, set[str]] = defaultdict(set)  # model -> keys already named in a group
    for (method, model, task), group in sorted(groups.items()):
        diffs = _differing(group, {key for run in group for key in run.settings})
        if diffs:
            problems.append(f"{method}/{model}/{task} differs in {_describe(diffs)}")
            reported[model].update(diffs)
    for model, group in sorted(by_model.items()):
        diffs = {k: v for k, v in _differing(group, MODEL_KEYS).items() if k not in reported[model]}
        if diffs:
            problems.append(f"model {model} differs across methods/tasks in {_describe(diffs)}")
    repeats = Counter((*run.group, run.lr, run.seed) for run in completed)
    for (method, model, task, lr, seed), count in sorted(repeats.items()):
        if count > 1:
            problems.append(f"{method}/{model}/{task} lr={lr:g} seed={seed} completed {count} times")
    return problems
