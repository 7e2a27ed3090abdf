"""The report's tables as DataFrames (written to CSV) plus the ordering and labels they share.

Scores are x100 (paper convention). Column meanings are listed in docs/report.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import pandas as pd

from .aggregate import AVERAGE, is_chosen
from .collect import Run

METHOD_LABELS = {"early_exit": "EE", "cascade": "MM", "sweet": "SWEET"}  # paper Table 2 order
METHOD_NAMES = {"early_exit": "Early-Exit", "cascade": "Multi-Model", "sweet": "SWEET"}
TASK_ORDER = ("sst2", "mrpc", "cola", "mnli", "qqp", "qnli", "rte")  # paper Table 2 order
LR_UNIT = 1e-5  # Table 2 prints learning rates in units of 1e-5


def method_order(methods: Sequence[str]) -> list[str]:
    known = [m for m in METHOD_LABELS if m in methods]
    return known + sorted(set(methods) - set(known))


def task_order(tasks: Sequence[str]) -> list[str]:
    """Paper order, unknown tasks alphabetically, the average last."""
    real = [t for t in set(tasks) if t != AVERAGE]
    ordered = [t for t in TASK_ORDER if t in real] + sorted(set(real) - set(TASK_ORDER))
    return ordered + ([AVERAGE] if AVERAGE in tasks else [])


def speedup_label(x: float) -> str:
    fraction = Fraction(x).limit_denominator(48)
    return str(fraction) if abs(float(fraction) - x) < 1e-9 else f"{x:.3g}"


def _select(summary: pd.DataFrame, quantity: str, x_name: str, columns: Sequence[str]) -> pd.DataFrame:
    part = summary[summary["quantity"] == quantity].rename(columns={"x": x_name})
    if part.empty:
        return pd.DataFrame(columns=["model", "task", "method", *columns])
    part = part.assign(
        _t=part["task"].map({t: i for i, t in enumerate(task_order(list(part["task"])))}),
        _m=part["method"].map({m: i for i, m in enumerate(method_order(list(part["method"])))}),
    )
    part = part.sort_values(["model", "_t", "_m", x_name])
    return part[["model", "task", "method", *columns]].reset_index(drop=True)


def table1_exits(summary: pd.DataFrame) -> pd.DataFrame:
    """Table 1: each exit alone, mean and std over seeds; `collapsed` counts seeds flagged."""
    columns = ["lr", "layer", "n", "mean", "std", "collapsed"]
    return _select(summary, "exit", "layer", columns).astype({"layer": int})


def curve_points(summary: pd.DataFrame) -> pd.DataFrame:
    """Figs. 4-6 read at fixed speedups: mean and 95% CI over seeds."""
    return _select(
        summary,
        "point",
        "speedup",
        ["lr", "speedup", "n", "mean", "std", "ci_half_width", "ci_low", "ci_high"],
    )


def curve_grid(summary: pd.DataFrame) -> pd.DataFrame:
    """The curves on a dense speedup grid, what the figures draw."""
    return _select(summary, "grid", "speedup", ["speedup", "n", "mean", "ci_low", "ci_high"])


def auc_table(summary: pd.DataFrame) -> pd.DataFrame:
    return _select(summary, "auc", "x", ["lr", "n", "mean", "std", "ci_half_width", "ci_low", "ci_high"])


def _lr_text(lr: float) -> str:
    return "–" if math.isnan(lr) else f"{lr / LR_UNIT:g}"


def chosen_lr_table(search: pd.DataFrame) -> pd.DataFrame:
    """Table 2: rows model x task, one column per method (lr in units of 1e-5) and the EE\\MM\\SWEET cell."""
    picked = search[search["chosen"]]
    methods = method_order(list(picked["method"].unique()) or list(METHOD_LABELS))
    rows = []
    for model in sorted(picked["model"].unique()):
        sub = picked[picked["model"] == model]
        for task in task_order(list(sub["task"].unique())):
            lr = sub[sub["task"] == task].set_index("method")["lr"]
            cell = "\\".join(_lr_text(lr.get(m, math.nan)) for m in METHOD_LABELS)
            rows.append([model, task, *(lr.get(m, math.nan) for m in methods), cell])
    return pd.DataFrame(rows, columns=["model", "task", *[f"lr_{m}" for m in methods], "ee_mm_sweet_1e-5"])


def _relative(path: Path, roots: Sequence[Path]) -> str:
    """The path below the first of the roots that holds it, else as it is."""
    for root in roots:
        if path.resolve().is_relative_to(root.resolve()):
            return str(path.resolve().relative_to(root.resolve()))
    return str(path)


def runs_table(runs: Sequence[Run], chosen: dict, roots: Sequence[Path]) -> pd.DataFrame:
    """Every run found, whatever its status; `chosen` marks runs at their group's chosen lr."""
    rows = []
    for run in runs:
        last = run.individual_scores[max(run.individual_scores)] if run.individual_scores else math.nan
        rows.append(
            {
                "run": _relative(run.path, roots),
                "status": run.status,
                "method": run.method,
                "model": run.model,
                "task": run.task,
                "lr": run.lr,
                "seed": run.seed,
                "auc": 100 * run.auc if run.auc is not None else math.nan,
                "last_exit": 100 * last,
                "chosen": is_chosen(run, chosen),
                "collapsed": "; ".join(f"{split}:L{layer}" for split, layer in run.collapsed),
                "error": run.error.splitlines()[-1] if run.error else "",
                "note": run.note,
                # below the working directory, the folder as seen from there: a report made from a
                # checkout names the same paths on every machine
                "path": _relative(run.path, [Path.cwd()]),
            }
        )
    table = pd.DataFrame(rows)  # never empty: the command stops when it finds no run
    # runs that need attention first, then by experiment axes (job folder names sort 0, 1, 10, 11, 2 ...)
    order = {s: i for i, s in enumerate(("failed", "missing", "incomplete", "completed"))}
    keys = table.assign(_s=table["status"].map(order))
    keys = keys.sort_values(
        ["_s", "model", "task", "method", "lr", "seed", "run"], na_position="last", kind="stable"
    )
    return table.loc[keys.index].reset_index(drop=True)
