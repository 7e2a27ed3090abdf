"""Refuse to average runs that differ in more than the swept learning rate and seed.

Two levels are checked on completed runs:
- within a (method, model, task) group, every setting collected in Run.settings (results.json
  keys such as max_epochs, train_size, exit_layers, exit_policy, calibration source, model_selection rule, plus the
  method/model/optimizer/scheduler config) must agree;
- within a model, across methods and tasks, the settings that make methods comparable
  (MODEL_KEYS) must agree, since Table 1 and the curves put them side by side.
A (method, model, task, lr, seed) that completed twice is refused too: it would count a seed twice.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence

from .collect import Run

MODEL_KEYS = ("exit_layers", "num_layers", "exit_pooling", "max_epochs", "train_size", "batch_size",
              "exit_policy", "calibration_source", "model_selection")


def _differing(runs: Sequence[Run], keys: Sequence[str]) -> dict[str, list[str]]:
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
    problems = []
    groups: dict[tuple[str, str, str], list[Run]] = defaultdict(list)
    for run in completed:
        groups[run.group].append(run)
    reported: dict[str, set[str]] = defaultdict(set)  # model -> keys already named in a group
    for (method, model, task), group in sorted(groups.items()):
        keys = sorted({key for run in group for key in run.settings})
        diffs = _differing(group, keys)
        if diffs:
            problems.append(f"{method}/{model}/{task} differs in {_describe(diffs)}")
            reported[model].update(diffs)
    by_model: dict[str, list[Run]] = defaultdict(list)
    for run in completed:
        by_model[str(run.model)].append(run)
    for model, group in sorted(by_model.items()):
        diffs = {k: v for k, v in _differing(group, MODEL_KEYS).items() if k not in reported[model]}
        if diffs:
            problems.append(f"model {model} differs across methods/tasks in {_describe(diffs)}")
    repeats = Counter((*run.group, run.lr, run.seed) for run in completed)
    for (method, model, task, lr, seed), count in sorted(repeats.items()):
        if count > 1:
            problems.append(f"{method}/{model}/{task} lr={lr:g} seed={seed} completed {count} times")
    return problems
