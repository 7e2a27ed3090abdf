"""Learning-rate selection: per (method, model, task), the lr whose speed-accuracy curve has the
largest AUC averaged over its completed seeds; ties go to the smaller lr.

The AUC is read on one of two splits (`--select-lr-on`):
- `calibration` (default): the hold-out of the training pool, which no table reports, so the
  reported dev numbers are not the best of several tries on dev;
- `dev`: the primary dev split, the one the tables report (paper App. A).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import pandas as pd

from .collect import Run
from .stats import summarize

GroupKey = tuple[str, str, str]  # (model, method, task)
SELECT_ON = ("calibration", "dev")
SELECTION_TEXT = {
    "calibration": "best mean AUC over seeds on the calibration hold-out (not a reported split)",
    "dev": "best mean AUC over seeds on dev, the reported split itself (paper App. A)",
}


def selection_auc(run: Run, on: str) -> float | None:
    return run.calibration_auc if on == "calibration" else run.auc


def unselectable(runs: Sequence[Run], on: str) -> list[Run]:
    """Completed runs without an AUC on the selection split (no hold-out, or trained before it was scored)."""
    return [r for r in runs if r.status == "completed" and selection_auc(r, on) is None]


def lr_search(runs: Sequence[Run], on: str = "calibration") -> pd.DataFrame:
    """One row per (model, method, task, lr): seeds, mean and std of the selection split's AUC (x100),
    and `chosen`. Completed runs without that AUC are left out (see `unselectable`)."""
    if on not in SELECT_ON:
        raise ValueError(f"select the lr on one of {', '.join(SELECT_ON)}, not {on!r}")
    # lists, not dicts by seed: with --allow-mixed a repeated seed counts as it does everywhere else
    aucs: dict[tuple[str, str, str, float], list[tuple[int, float]]] = defaultdict(list)
    for run in runs:
        value = selection_auc(run, on) if run.status == "completed" else None
        if value is not None:
            aucs[(str(run.model), str(run.method), str(run.task), float(run.lr))].append((run.seed, 100 * value))
    rows = []
    for (model, method, task, lr), pairs in aucs.items():
        summary = summarize([value for _, value in pairs])
        rows.append({"model": model, "method": method, "task": task, "lr": lr, "n": summary.n,
                     "seeds": " ".join(str(s) for s, _ in sorted(pairs)), "auc_mean": summary.mean,
                     "auc_std": summary.std})
    columns = ["model", "method", "task", "lr", "n", "seeds", "auc_mean", "auc_std", "chosen"]
    if not rows:
        return pd.DataFrame(columns=columns).astype({"chosen": bool})  # bool, so it can still index rows
    table = pd.DataFrame(rows).sort_values(["model", "method", "task", "lr"], ignore_index=True)
    best = table.sort_values(["auc_mean", "lr"], ascending=[False, True]).groupby(["model", "method", "task"]).head(1)
    table["chosen"] = table.index.isin(best.index)
    return table[columns]


def chosen_lrs(search: pd.DataFrame) -> dict[GroupKey, float]:
    picked = search[search["chosen"]]
    return {(r.model, r.method, r.task): float(r.lr) for r in picked.itertuples()}


def uneven_seed_notes(search: pd.DataFrame) -> list[str]:
    """Groups whose chosen lr rests on fewer seeds than another lr of the group: its mean AUC is
    less certain than the ones it beat, so the report says so."""
    notes = []
    for (model, method, task), group in search.groupby(["model", "method", "task"]):
        chosen = group[group["chosen"]]
        if chosen.empty:
            continue
        n_chosen, n_max = int(chosen["n"].iloc[0]), int(group["n"].max())
        if n_chosen < n_max:
            lr = float(chosen["lr"].iloc[0])
            notes.append(f"{method}/{model}/{task}: chosen lr {lr:g} has {n_chosen} completed seed(s), "
                         f"another lr has {n_max}")
    return notes
