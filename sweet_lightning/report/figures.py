"""The report's figures, drawn from its CSV tables only (so the notebook can redraw a saved report),
one panel per task plus the average over tasks:

- speed-accuracy curves in the style of paper Figs. 4-6: one line per method (mean over seeds)
  with its 95% CI band, markers at the fixed speedups (`curves_<model>.png`);
- the individual exits of paper Table 1: each exit's score alone per method, mean ± std over
  seeds (`exits_<model>.png`);
- the lr search, where some method met more than one lr: each lr's AUC on the selection split per
  method, mean ± std over seeds, the chosen lr ringed (`lr_search_<model>.png`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from .aggregate import AVERAGE
from .tables import METHOD_NAMES, method_order, task_order

COLORS = {"early_exit": "tab:blue", "cascade": "tab:orange", "sweet": "tab:green"}
# other methods (docs/strategies.md): the rest of tab10 in name order, dashed, so that no two methods
# of one figure share a colour and the paper's three stand out
OTHER_COLORS = ("tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")
MAX_COLUMNS = 4
LEGEND_WIDTH = 2.0  # inches added on the right for a legend beside the panels


def method_styles(methods) -> dict[str, dict]:
    """Line colour and style per method: the paper's three keep theirs in every figure."""
    others = sorted(set(methods) - set(COLORS))
    styles = {m: {"color": c, "linestyle": "-"} for m, c in COLORS.items()}
    for i, method in enumerate(others):
        styles[method] = {"color": OTHER_COLORS[i % len(OTHER_COLORS)], "linestyle": "--"}
    return styles


def draw_model_curves(
    grid: pd.DataFrame, points: pd.DataFrame, model: str, fig: Figure | None = None
) -> Figure:
    """Draw one model's curves (curve_grid.csv and curve_points.csv rows) into fig, or a new Figure."""
    points = points[points["model"] == model]

    def draw(ax, task: str, method: str, line: pd.DataFrame, style: dict) -> None:
        line = line.sort_values("speedup").dropna(subset=["mean"])
        if line.empty:
            return
        ax.plot(line["speedup"], line["mean"], **style, label=METHOD_NAMES.get(method, method))
        ax.fill_between(
            line["speedup"], line["ci_low"], line["ci_high"], color=style["color"], alpha=0.2, linewidth=0
        )
        marks = points[(points["task"] == task) & (points["method"] == method)]
        ax.plot(marks["speedup"], marks["mean"], "o", color=style["color"], markersize=3)

    return _per_task(grid, model, fig, draw, "speedup ratio", "speed-accuracy (mean over seeds, 95% CI)")


def draw_model_exits(table1: pd.DataFrame, model: str, fig: Figure | None = None) -> Figure:
    """Each exit alone (table1_exits.csv rows of one model): score against exit layer per method,
    mean over seeds with ± std bars, as the paper's Table 1 compares the methods exit by exit."""
    table1 = table1[table1["model"] == model]

    def draw(ax, task: str, method: str, rows: pd.DataFrame, style: dict) -> None:
        if rows.empty:
            return
        rows = rows.sort_values("layer")
        _mean_std(ax, rows["layer"], rows["mean"], rows["std"], style, method)
        ax.set_xticks(sorted(set(table1.loc[table1["task"] == task, "layer"].astype(int))))

    return _per_task(table1, model, fig, draw, "exit layer", "individual exits (mean ± std over seeds)")


def _mean_std(ax, x: pd.Series, mean: pd.Series, std: pd.Series, style: dict, method: str) -> None:
    """One method's means over seeds with ± std bars (none where one seed leaves std undefined)."""
    label = METHOD_NAMES.get(method, method)
    ax.errorbar(x, mean, yerr=std.fillna(0.0), marker="o", markersize=4, capsize=3, **style, label=label)


def draw_lr_search(search: pd.DataFrame, model: str, fig: Figure | None = None) -> Figure:
    """The lr search (lr_search.csv rows of one model): AUC on the selection split against lr per
    method, mean over seeds with ± std bars; the lr each method chose is ringed."""
    search = search[search["model"] == model]
    on = search["lr_selected_on"].iloc[0] if "lr_selected_on" in search and len(search) else "selection"

    def draw(ax, task: str, method: str, rows: pd.DataFrame, style: dict) -> None:
        if rows.empty:
            return
        rows = rows.sort_values("lr")
        _mean_std(ax, rows["lr"], rows["auc_mean"], rows["auc_std"], style, method)
        chosen = rows[rows["chosen"].astype(bool)]
        ax.plot(chosen["lr"], chosen["auc_mean"], "o", mfc="none", mec=style["color"], markersize=10)
        ax.set_xscale("log")
        lrs = sorted(set(search.loc[search["task"] == task, "lr"].astype(float)))
        ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
        ax.minorticks_off()

    title = f"lr search: AUC on {on} (mean ± std over seeds; ringed: chosen)"
    return _per_task(search, model, fig, draw, "learning rate", title, ylabel="AUC (x100)")


def searched(search: pd.DataFrame, model: str) -> bool:
    """Whether some (method, task) of the model met more than one lr: only then is there a search to draw."""
    rows = search[search["model"] == model]
    return bool(len(rows)) and int(rows.groupby(["method", "task"])["lr"].nunique().max()) > 1


def _per_task(
    table: pd.DataFrame,
    model: str,
    fig: Figure | None,
    draw: Callable,
    xlabel: str,
    title: str,
    ylabel: str = "score (x100)",
) -> Figure:
    """One panel per task of the model (paper order, the average over tasks last), `draw(ax, task,
    method, rows, style)` for each method's rows there. Beyond the paper's three methods the legend
    moves to the right of the panels, where it hides no line. A bare Figure needs no pyplot backend; the notebook
    passes its own pyplot figure instead."""
    table = table[table["model"] == model]
    tasks = task_order(list(table["task"].unique()))
    ncols = min(MAX_COLUMNS, max(len(tasks), 1))
    nrows = math.ceil(len(tasks) / ncols)
    methods = method_order(list(table["method"].unique()))
    styles = method_styles(methods)
    outside = len(methods) > len(COLORS)
    fig = fig if fig is not None else Figure()
    fig.set_size_inches(4.2 * ncols + (LEGEND_WIDTH if outside else 0.0), 3.4 * nrows)
    for i, task in enumerate(tasks):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for method in methods:
            draw(
                ax, task, method, table[(table["task"] == task) & (table["method"] == method)], styles[method]
            )
        ax.set_title("average over tasks" if task == AVERAGE else task)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if i == 0 and not outside:
            ax.legend(fontsize="small")
    fig.suptitle(f"{model}: {title}")
    if outside:
        legend = {}  # label -> handle, over every panel (a method may miss a task)
        for ax in fig.axes:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                legend.setdefault(label, handle)
        fig.legend(list(legend.values()), list(legend), loc="center right", fontsize="small")
        fig.tight_layout(rect=(0, 0, 1 - LEGEND_WIDTH / fig.get_size_inches()[0], 1))
    else:
        fig.tight_layout()
    return fig


def write_figures(
    grid: pd.DataFrame, points: pd.DataFrame, table1: pd.DataFrame, search: pd.DataFrame, out: Path
) -> list[Path]:
    paths = []
    for model in sorted(m for m in search["model"].unique() if searched(search, m)):
        paths.append(out / f"lr_search_{model}.png")
        draw_lr_search(search, model).savefig(paths[-1], dpi=120)
    for model in sorted(grid["model"].unique()):
        paths.append(out / f"curves_{model}.png")
        draw_model_curves(grid, points, model).savefig(paths[-1], dpi=120)
    for model in sorted(table1["model"].unique()):
        paths.append(out / f"exits_{model}.png")
        draw_model_exits(table1, model).savefig(paths[-1], dpi=120)
    return paths
