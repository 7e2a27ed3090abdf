"""The report's figures, drawn from its CSV tables only (so the notebook can redraw a saved report),
one panel per task plus the average over tasks:

- speed-accuracy curves in the style of paper Figs. 4-6: one line per method (mean over seeds)
  with its 95% CI band, markers at the fixed speedups (`curves_<model>.png`);
- the individual exits of paper Table 1: each exit's score alone per method, mean ± std over
  seeds (`exits_<model>.png`).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from .aggregate import AVERAGE
from .tables import METHOD_NAMES, method_order, task_order

COLORS = {"early_exit": "tab:blue", "cascade": "tab:orange", "sweet": "tab:green"}
MAX_COLUMNS = 4


def draw_model_curves(grid: pd.DataFrame, points: pd.DataFrame, model: str, fig: Figure | None = None) -> Figure:
    """Draw one model's curves (curve_grid.csv and curve_points.csv rows) into fig, or a new Figure."""
    grid, points = grid[grid["model"] == model], points[points["model"] == model]
    tasks = task_order(list(grid["task"].unique()))
    # a bare Figure needs no pyplot backend; the notebook passes its own pyplot figure instead
    fig, nrows, ncols = _panels(tasks, fig)
    methods = method_order(list(grid["method"].unique()))
    for i, task in enumerate(tasks):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for method in methods:
            line = grid[(grid["task"] == task) & (grid["method"] == method)].sort_values("speedup")
            line = line[line["mean"].notna()]
            if line.empty:
                continue
            color = COLORS.get(method)
            drawn = ax.plot(line["speedup"], line["mean"], color=color, label=METHOD_NAMES.get(method, method))
            ax.fill_between(line["speedup"], line["ci_low"], line["ci_high"], color=drawn[0].get_color(),
                            alpha=0.2, linewidth=0)
            marks = points[(points["task"] == task) & (points["method"] == method)]
            ax.plot(marks["speedup"], marks["mean"], "o", color=drawn[0].get_color(), markersize=3)
        _label_panel(ax, task, "speedup ratio", legend=i == 0)
    fig.suptitle(f"{model}: speed-accuracy (mean over seeds, 95% CI)")
    fig.tight_layout()
    return fig


def _label_panel(ax, task: str, xlabel: str, legend: bool) -> None:
    ax.set_title("average over tasks" if task == AVERAGE else task)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("score (x100)")
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize="small")


def _panels(tasks: list[str], fig: Figure | None, height: float = 3.4) -> tuple[Figure, int, int]:
    ncols = min(MAX_COLUMNS, max(len(tasks), 1))
    nrows = math.ceil(len(tasks) / ncols)
    fig = fig if fig is not None else Figure()
    fig.set_size_inches(4.2 * ncols, height * nrows)
    return fig, nrows, ncols


def draw_model_exits(table1: pd.DataFrame, model: str, fig: Figure | None = None) -> Figure:
    """Each exit alone (table1_exits.csv rows of one model): score against exit layer per method,
    mean over seeds with ± std bars, as the paper's Table 1 compares the methods exit by exit."""
    table1 = table1[table1["model"] == model]
    tasks = task_order(list(table1["task"].unique()))
    fig, nrows, ncols = _panels(tasks, fig)
    methods = method_order(list(table1["method"].unique()))
    for i, task in enumerate(tasks):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        layers: list[int] = []
        for method in methods:
            rows = table1[(table1["task"] == task) & (table1["method"] == method)].sort_values("layer")
            if rows.empty:
                continue
            layers = sorted(set(layers) | set(rows["layer"].astype(int)))
            std = rows["std"].fillna(0.0)
            ax.errorbar(rows["layer"], rows["mean"], yerr=std, marker="o", markersize=4, capsize=3,
                        color=COLORS.get(method), label=METHOD_NAMES.get(method, method))
        ax.set_xticks(layers)
        _label_panel(ax, task, "exit layer", legend=i == 0)
    fig.suptitle(f"{model}: individual exits (mean ± std over seeds)")
    fig.tight_layout()
    return fig


def write_figures(grid: pd.DataFrame, points: pd.DataFrame, out: Path, table1: pd.DataFrame | None = None) -> list[Path]:
    paths = []
    for model in sorted(grid["model"].unique()):
        path = out / f"curves_{model}.png"
        draw_model_curves(grid, points, model).savefig(path, dpi=120)
        paths.append(path)
    if table1 is not None:
        for model in sorted(table1["model"].unique()):
            path = out / f"exits_{model}.png"
            draw_model_exits(table1, model).savefig(path, dpi=120)
            paths.append(path)
    return paths
