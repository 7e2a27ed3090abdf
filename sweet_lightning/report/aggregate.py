"""Step 2 of the report: choose each (method, model, task)'s learning rate, then summarise the
chosen runs over seeds (scores x100), per task and averaged over tasks. The rules, and why:
docs/report.md, "How numbers are computed". In short:
- the lr with the largest AUC averaged over its completed seeds, ties to the smaller lr, read on the
  calibration hold-out (default: no table reports it, so the reported dev numbers are not the best
  of several tries on dev) or on dev as the paper's App. A did (`--select-lr-on`);
- the average over tasks is taken per seed (runs paired across tasks by seed value), then mean, std
  and 95% t CI over those per-seed averages; a seed missing on some task is left out and noted;
- anything undefined (n < 2 for the spread, a NaN among the values) is NaN, printed as "–".

Observations come in four quantities: "exit" (x = exit layer, the exit alone),
"point" (x = a fixed speedup, linearly interpolated on the curve), "grid" (x = a dense speedup
grid for the figures) and "auc" (x = 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sweet_lightning.evaluation import default_speedup_points, interpolate_at

from .collect import Run

# ---- statistics over seeds ---------------------------------------------------------------------
# two-sided 95%: t_{0.975, df} for df = 1..30
T975 = (
    12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836, 2.446911851, 2.364624252,
    2.306004135, 2.262157163, 2.228138852, 2.200985160, 2.178812830, 2.160368656, 2.144786688,
    2.131449546, 2.119905299, 2.109815578, 2.100922040, 2.093024054, 2.085963447, 2.079613845,
    2.073873068, 2.068657610, 2.063898562, 2.059538553, 2.055529439, 2.051830516, 2.048407142,
    2.045229642, 2.042272456,
)  # fmt: skip
Z975 = 1.959963984540054


def t_critical(df: int) -> float:
    """Two-sided 95% critical value of Student's t with df degrees of freedom: tabulated up to df 30,
    beyond from the Cornish-Fisher expansion (Abramowitz & Stegun 26.7.5, error < 1e-5), so the
    report needs no scipy."""
    if df < 1:
        raise ValueError(f"t distribution needs df >= 1, got {df}")
    if df <= len(T975):
        return T975[df - 1]
    z = Z975
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample std (ddof=1)
    half_width: float  # of the 95% CI for the mean


def summarize(values: Sequence[float]) -> Summary:
    """Summary over seeds; a NaN among the values (e.g. a speedup one seed's curve never
    reaches) makes everything NaN rather than averaging the seeds that happen to reach it."""
    arr = np.asarray(values, dtype=np.float64)
    n = int(arr.size)
    if n == 0 or np.isnan(arr).any():
        return Summary(n, math.nan, math.nan, math.nan)
    mean = float(arr.mean())
    if n < 2:
        return Summary(n, mean, math.nan, math.nan)
    std = float(arr.std(ddof=1))
    return Summary(n, mean, std, t_critical(n - 1) * std / math.sqrt(n))


# ---- learning-rate selection ---------------------------------------------------------------------
GroupKey = tuple[str, str, str]  # (model, method, task)
SELECT_ON = ("calibration", "dev")
SELECTION_TEXT = {
    "calibration": "best mean AUC over seeds on the calibration hold-out (not a reported split)",
    "dev": "best mean AUC over seeds on dev, the reported split itself (paper App. A)",
}


def selection_auc(run: Run, on: str) -> float | None:
    if on not in SELECT_ON:  # the CLI's choices check this; a Python caller would else select on dev
        raise ValueError(f"select the lr on one of {', '.join(SELECT_ON)}, not {on!r}")
    return run.calibration_auc if on == "calibration" else run.auc


def unselectable(runs: Sequence[Run], on: str) -> list[Run]:
    """Completed runs without an AUC on the selection split (no hold-out, or trained before it was scored)."""
    return [r for r in runs if r.status == "completed" and selection_auc(r, on) is None]


def lr_search(runs: Sequence[Run], on: str = "calibration") -> pd.DataFrame:
    """One row per (model, method, task, lr): seeds, mean and std of the selection split's AUC (x100),
    and `chosen`. Completed runs without that AUC are left out (see `unselectable`)."""
    columns = ["model", "method", "task", "lr", "n", "seeds", "auc_mean", "auc_std", "chosen"]
    # a row per run, not per seed: with --allow-mixed a repeated seed counts as it does everywhere else
    aucs = pd.DataFrame(
        [
            (*run.group, float(run.lr), run.seed, 100 * selection_auc(run, on))
            for run in runs
            if run.status == "completed" and selection_auc(run, on) is not None
        ],
        columns=["method", "model", "task", "lr", "seed", "auc"],
    )
    if aucs.empty:
        return pd.DataFrame(columns=columns).astype({"chosen": bool})  # bool, so it can still index rows
    rows = []
    for (model, method, task, lr), group in aucs.groupby(["model", "method", "task", "lr"]):
        summary = summarize(group["auc"])
        seeds = " ".join(map(str, sorted(group["seed"])))
        rows.append((model, method, task, lr, summary.n, seeds, summary.mean, summary.std))
    table = pd.DataFrame(rows, columns=columns[:-1])
    best = (
        table.sort_values(["auc_mean", "lr"], ascending=[False, True])
        .groupby(["model", "method", "task"])
        .head(1)
    )
    table["chosen"] = table.index.isin(best.index)
    return table


def chosen_lrs(search: pd.DataFrame) -> dict[GroupKey, float]:
    picked = search[search["chosen"]]
    return {(r.model, r.method, r.task): float(r.lr) for r in picked.itertuples()}


def uneven_seed_notes(search: pd.DataFrame) -> list[str]:
    """Groups whose chosen lr rests on fewer seeds than another lr of the group: its mean AUC is
    less certain than the ones it beat, so the report says so."""
    search = search.assign(most=search.groupby(["model", "method", "task"])["n"].transform("max"))
    fewer = search[search["chosen"] & (search["n"] < search["most"])]
    return [
        f"{r.method}/{r.model}/{r.task}: chosen lr {r.lr:g} has {r.n} completed seed(s), "
        f"another lr has {r.most}"
        for r in fewer.sort_values(["model", "method", "task"]).itertuples()
    ]


# ---- observations and their summaries -------------------------------------------------------------
AVERAGE = "average"
CASCADE_EXTRA_SPEEDUPS = (1.375, 1.75)  # paper App. A footnote 16: where Multi-Model also lands
GRID_SIZE = 101
KEYS = ["quantity", "model", "method", "task", "x"]


def is_chosen(run: Run, chosen: dict[GroupKey, float]) -> bool:
    """Completed at its group's chosen lr: a run the tables and figures use."""
    return run.status == "completed" and chosen.get((run.model, run.method, run.task)) == run.lr


def speedup_points(runs: Sequence[Run], override: Sequence[float] | None = None) -> np.ndarray:
    """Fixed speedups for one model: (1/L_M, 1/4, 1/2, 3/4, 1), plus 11/8 and 7/4 if a cascade reaches them."""
    if override:
        return np.array(sorted(override), dtype=np.float64)
    points = set(default_speedup_points(max(r.curve.num_layers for r in runs)))
    reach = max((r.curve.speedups.max() for r in runs if r.curve.cost_model == "cascade"), default=0.0)
    points.update(x for x in CASCADE_EXTRA_SPEEDUPS if x <= reach)
    return np.array(sorted(points))


def speedup_grid(runs: Sequence[Run], points: np.ndarray) -> np.ndarray:
    lo = min(r.curve.speedups.min() for r in runs)
    hi = max(r.curve.speedups.max() for r in runs)
    inside = points[(points >= lo) & (points <= hi)]
    return np.unique(np.round(np.concatenate([np.linspace(lo, hi, GRID_SIZE), inside]), 10))


def observations(
    runs: Sequence[Run], chosen: dict[GroupKey, float], speedups: Sequence[float] | None = None
) -> pd.DataFrame:
    rows = []
    picked = [run for run in runs if is_chosen(run, chosen)]
    for model in sorted({r.model for r in picked}):
        model_runs = [r for r in picked if r.model == model]
        points = speedup_points(model_runs, speedups)
        grid = speedup_grid(model_runs, points)
        for run in model_runs:
            base = {"model": model, "method": run.method, "task": run.task, "lr": run.lr, "seed": run.seed}
            flagged = {layer for split, layer in run.collapsed if split == run.split}
            found = [  # (quantity, x, score, collapsed)
                ("exit", float(layer), s, layer in flagged)
                for layer, s in sorted(run.individual_scores.items())
            ]
            for quantity, xs in (("point", points), ("grid", grid)):
                scores = interpolate_at(run.curve, xs)
                found += [(quantity, float(x), s, False) for x, s in zip(xs, scores, strict=True)]
            found.append(("auc", 0.0, run.auc, False))
            rows += [
                {**base, "quantity": q, "x": x, "value": 100 * s, "collapsed": c} for q, x, s, c in found
            ]
    return pd.DataFrame(rows, columns=[*KEYS, "lr", "seed", "value", "collapsed"])


def _summary_row(key: Sequence, lr: float, values: Sequence[float], collapsed: int) -> dict:
    """A row of the summaries: `key` (the values of KEYS), lr, the statistics over seeds, collapsed seeds."""
    s = summarize(values)
    return {
        **dict(zip(KEYS, key, strict=True)),
        "lr": lr,
        "n": s.n,
        "mean": s.mean,
        "std": s.std,
        "ci_half_width": s.half_width,
        "ci_low": s.mean - s.half_width,
        "ci_high": s.mean + s.half_width,
        "collapsed": int(collapsed),
    }


def summarize_tasks(obs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for key, group in obs.groupby(KEYS, sort=True):
        lrs = group["lr"].unique()
        lr = lrs[0] if lrs.size == 1 else math.nan
        rows.append(_summary_row(key, lr, group["value"].to_numpy(), group["collapsed"].sum()))
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
                notes.append(
                    f"{method}/{model}: no average over tasks, no chosen runs on {', '.join(absent)}"
                )
                continue
            common = set.intersection(*seeds.values())
            left_out = {task: sorted(s - common) for task, s in seeds.items() if s - common}
            if left_out:
                named = "; ".join(
                    f"{task} seeds {', '.join(map(str, s))}" for task, s in sorted(left_out.items())
                )
                notes.append(
                    f"{method}/{model}: average over tasks uses seeds {sorted(common)}; left out {named}"
                )
            used = sub[sub["seed"].isin(common)]
            # a NaN for any task (an unreachable speedup) leaves that seed's average undefined
            per_task = used.groupby(["quantity", "x", "seed", "task"])["value"].agg(["mean", "count", "size"])
            per_task.loc[per_task["count"] < per_task["size"], "mean"] = np.nan
            per_seed = (
                per_task["mean"]
                .groupby(level=["quantity", "x", "seed"])
                .agg(lambda v: v.mean() if v.notna().all() else np.nan)
            )
            flags = used.groupby(["quantity", "x"])["collapsed"].sum()
            for (quantity, x), values in per_seed.groupby(level=["quantity", "x"]):
                key = (quantity, model, method, AVERAGE, x)
                rows.append(_summary_row(key, math.nan, values.to_numpy(), flags[(quantity, x)]))
    return pd.DataFrame(rows), notes


def summaries(obs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Per-task and task-averaged summaries in one frame (task == "average" for the latter)."""
    if obs.empty:
        return pd.DataFrame(
            columns=[*KEYS, "lr", "n", "mean", "std", "ci_half_width", "ci_low", "ci_high", "collapsed"]
        ), []
    average, notes = summarize_average(obs)
    return pd.concat([summarize_tasks(obs), average], ignore_index=True), notes
