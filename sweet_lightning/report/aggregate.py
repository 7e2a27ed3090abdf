"""Per-seed observations of the chosen-lr runs, summarised per task and averaged over tasks.

Observations (scores x100) come in four quantities: "exit" (x = exit layer, the exit alone),
"point" (x = a fixed speedup, linearly interpolated on the curve), "grid" (x = a dense speedup
grid for the figures) and "auc" (x = 0).

Average over tasks: for each seed, the scores of that seed's runs are averaged over the
model's tasks, and mean, std and CI are taken over those per-seed averages (so the std is
the seed-to-seed spread of a task-averaged score, as in the paper's Table 1). Runs are paired
across tasks by seed value (one seed draws one training sample per task, shared by methods);
a seed that is missing for some task is left out of the average and named in the notes, and a
method without chosen runs on some task of the model has no average at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sweet_lightning.evaluation import default_speedup_points, interpolate_at

from .collect import Run
from .selection import GroupKey
from .stats import summarize

AVERAGE = "average"
CASCADE_EXTRA_SPEEDUPS = (1.375, 1.75)  # paper App. A footnote 16: where Multi-Model also lands
GRID_SIZE = 101
KEYS = ["quantity", "model", "method", "task", "x"]


def chosen_runs(runs: Sequence[Run], chosen: dict[GroupKey, float]) -> list[Run]:
    return [r for r in runs if r.status == "completed" and chosen.get((r.model, r.method, r.task)) == r.lr]


def speedup_points(runs: Sequence[Run], override: Sequence[float] | None = None) -> np.ndarray:
    """Fixed speedups for one model: (1/L_M, 1/4, 1/2, 3/4, 1), plus 11/8 and 7/4 if a cascade reaches them."""
    if override:
        return np.array(sorted(override), dtype=np.float64)
    points = set(default_speedup_points(max(r.num_layers for r in runs)))
    reach = max((r.curve.speedups.max() for r in runs if r.kind == "cascade"), default=0.0)
    points.update(x for x in CASCADE_EXTRA_SPEEDUPS if x <= reach)
    return np.array(sorted(points))


def speedup_grid(runs: Sequence[Run], points: np.ndarray) -> np.ndarray:
    lo = min(r.curve.speedups.min() for r in runs)
    hi = max(r.curve.speedups.max() for r in runs)
    inside = points[(points >= lo) & (points <= hi)]
    return np.unique(np.round(np.concatenate([np.linspace(lo, hi, GRID_SIZE), inside]), 10))


def observations(runs: Sequence[Run], chosen: dict[GroupKey, float],
                 speedups: Sequence[float] | None = None) -> pd.DataFrame:
    rows = []
    picked = chosen_runs(runs, chosen)
    for model in sorted({r.model for r in picked}):
        model_runs = [r for r in picked if r.model == model]
        points = speedup_points(model_runs, speedups)
        grid = speedup_grid(model_runs, points)
        for run in model_runs:
            base = {"model": model, "method": run.method, "task": run.task, "lr": run.lr, "seed": run.seed}
            flagged = {layer for split, layer in run.collapsed if split == run.split}
            for layer, score in sorted(run.exit_scores.items()):
                rows.append({**base, "quantity": "exit", "x": float(layer), "value": 100 * score,
                             "collapsed": layer in flagged})
            for quantity, xs in (("point", points), ("grid", grid)):
                values = interpolate_at(run.curve, xs)
                rows.extend({**base, "quantity": quantity, "x": float(x), "value": 100 * v, "collapsed": False}
                            for x, v in zip(xs, values, strict=True))
            rows.append({**base, "quantity": "auc", "x": 0.0, "value": 100 * run.auc, "collapsed": False})
    columns = [*KEYS, "lr", "seed", "value", "collapsed"]
    return pd.DataFrame(rows, columns=columns)


def _summary_row(values: Sequence[float]) -> dict:
    s = summarize(values)
    return {"n": s.n, "mean": s.mean, "std": s.std, "ci_half_width": s.half_width,
            "ci_low": s.ci_low, "ci_high": s.ci_high}


def summarize_tasks(obs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for key, group in obs.groupby(KEYS, sort=True):
        lrs = group["lr"].unique()
        rows.append({**dict(zip(KEYS, key, strict=True)), "lr": lrs[0] if lrs.size == 1 else math.nan,
                     **_summary_row(group["value"].to_numpy()), "collapsed": int(group["collapsed"].sum())})
    return pd.DataFrame(rows)


def summarize_average(obs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Task-averaged summaries per (quantity, model, method, x), and notes on what was left out."""
    rows, notes = [], []
    for model, model_obs in obs.groupby("model", sort=True):
        tasks = sorted(model_obs["task"].unique())
        for method, sub in model_obs.groupby("method", sort=True):
            seeds = sub[sub["quantity"] == "auc"].groupby("task")["seed"].apply(set).to_dict()
            absent = [task for task in tasks if task not in seeds]
            if absent:
                notes.append(f"{method}/{model}: no average over tasks, no chosen runs on {', '.join(absent)}")
                continue
            common = set.intersection(*seeds.values())
            left_out = {task: sorted(s - common) for task, s in seeds.items() if s - common}
            if left_out:
                named = "; ".join(f"{task} seeds {', '.join(map(str, s))}" for task, s in sorted(left_out.items()))
                notes.append(f"{method}/{model}: average over tasks uses seeds {sorted(common)}; left out {named}")
            used = sub[sub["seed"].isin(common)]
            # a NaN for any task (an unreachable speedup) leaves that seed's average undefined
            per_task = used.groupby(["quantity", "x", "seed", "task"])["value"].agg(["mean", "count", "size"])
            per_task.loc[per_task["count"] < per_task["size"], "mean"] = np.nan
            per_seed = per_task["mean"].groupby(level=["quantity", "x", "seed"]).agg(
                lambda v: v.mean() if v.notna().all() else np.nan)
            flags = used.groupby(["quantity", "x"])["collapsed"].sum()
            for (quantity, x), values in per_seed.groupby(level=["quantity", "x"]):
                rows.append({"quantity": quantity, "model": model, "method": method, "task": AVERAGE, "x": x,
                             "lr": math.nan, **_summary_row(values.to_numpy()),
                             "collapsed": int(flags[(quantity, x)])})
    return pd.DataFrame(rows), notes


def summaries(obs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Per-task and task-averaged summaries in one frame (task == "average" for the latter)."""
    if obs.empty:
        return pd.DataFrame(columns=[*KEYS, "lr", "n", "mean", "std", "ci_half_width", "ci_low", "ci_high",
                                     "collapsed"]), []
    average, notes = summarize_average(obs)
    return pd.concat([summarize_tasks(obs), average], ignore_index=True), notes
