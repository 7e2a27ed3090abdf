"""Step 4 of the report: write its directory: the CSV tables, the figures, and report.md (the tables
as Markdown, with the runs that need attention listed first)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd

from . import aggregate, tables
from .aggregate import AVERAGE, SELECTION_TEXT, chosen_lrs, lr_search, uneven_seed_notes
from .collect import STATUSES, Run
from .figures import write_figures
from .tables import METHOD_LABELS, METHOD_NAMES, method_order, speedup_label, task_order

DEFAULT_TITLE = "SWEET reproduction report"


def summary_line(runs: Sequence[Run]) -> str:
    counts = Counter(run.status for run in runs)
    return f"{len(runs)} runs: " + ", ".join(f"{counts[status]} {status}" for status in STATUSES)


def methods_line(methods: Sequence[str], left_out: Sequence[Run]) -> str:
    """What `--methods` kept and left out, e.g. "early_exit, sweet; 6 runs of 2 other methods left out
    (cascade 3, two_stage 3)"."""
    text = f"{', '.join(methods)}; "
    if not left_out:
        return text + "no run of another method found"
    counts = Counter(str(run.method) for run in left_out)
    others = ", ".join(f"{method} {n}" for method, n in sorted(counts.items()))
    runs = "run" if len(left_out) == 1 else "runs"
    kinds = "method" if len(counts) == 1 else "methods"
    return text + f"{len(left_out)} {runs} of {len(counts)} other {kinds} left out ({others})"


def write_report(
    runs: Sequence[Run],
    out: Path,
    sources: Sequence[Path],
    speedups: Sequence[float] | None = None,
    mixed: Sequence[str] = (),
    select_on: str = "calibration",
    methods: str = "",
    title: str = DEFAULT_TITLE,
    split: str | None = None,
) -> list[Path]:
    """Write report.md, the CSV tables and curves_<model>.png and exits_<model>.png per model (and
    lr_search_<model>.png where a model's runs met more than one lr); return the paths.
    `mixed`: the problems overridden with --allow-mixed; `select_on`: the split whose AUC chooses each
    group's lr (aggregate.lr_search); `methods`: the `methods_line` of a `--methods` filter (runs holds
    the kept runs only), empty without one; `title`: report.md's heading; `split`: the `--split` the
    runs were loaded with (None: each run's primary split)."""
    out.mkdir(parents=True, exist_ok=True)
    search = lr_search(runs, select_on)
    chosen = chosen_lrs(search)
    summary, notes = aggregate.summaries(aggregate.observations(runs, chosen, speedups))
    frames = {
        "runs.csv": tables.runs_table(runs, chosen, sources),
        "chosen_lr.csv": tables.chosen_lr_table(search),
        "lr_search.csv": search,
        "table1_exits.csv": tables.table1_exits(summary),
        "curve_points.csv": tables.curve_points(summary),
        "curve_grid.csv": tables.curve_grid(summary),
        "auc.csv": tables.auc_table(summary),
    }
    # every table says which lr selection made it
    frames = {name: frame.assign(lr_selected_on=select_on) for name, frame in frames.items()}
    for name, frame in frames.items():
        # 10 significant digits: exact enough to recompute from, without float noise like 56.00000000000001
        frame.to_csv(out / name, index=False, float_format="%.10g")
    figures = write_figures(
        frames["curve_grid.csv"],
        frames["curve_points.csv"],
        frames["table1_exits.csv"],
        frames["lr_search.csv"],
        out,
    )
    head = [f"# {title}", "", summary_line(runs), "", "Sweeps: " + ", ".join(f"`{p}`" for p in sources), ""]
    if methods:  # a filtered report says so, or a reader would take it for the whole sweep
        head += [f"Methods (`--methods`): {methods}.", ""]
    if split:
        head += [f"Split (`--split`): every table and figure reads `{split}`.", ""]
    if mixed:
        head += ["> **Warning: mixed configurations averaged (`--allow-mixed`).**", ""]
        head += [f"> - {problem}" for problem in mixed] + [""]
    notes = [*uneven_seed_notes(search), *notes]
    (out / "report.md").write_text(render(head, frames, figures, notes, select_on))
    return [out / "report.md", *(out / name for name in frames), *figures]


# ---- report.md -----------------------------------------------------------------------------------
DASH = "–"

METHOD_NOTE = """\
How the numbers are made (details in docs/report.md):
- scores are x100; the learning rate of each (method, model, task) is the one with the {selection},
  and every other table uses only runs at that learning rate;
- individual exits: mean ± sample std over seeds; curve points: linear interpolation of each
  seed's speed-accuracy curve at the fixed speedup, mean ± half-width of the 95% t interval;
- average over tasks: per seed, the mean over the model's tasks; then mean, std and CI over seeds;
- `–`: undefined (one seed: no std or CI; a speedup some seed's curve does not reach);
  `†`: an exit flagged as collapsed (one class, or majority-class accuracy) in at least one seed."""
RUN_COLUMNS = ["run", "status", "method", "model", "task", "lr", "seed"]  # runs.csv columns report.md shows


def fmt(value: float) -> str:
    return DASH if pd.isna(value) else f"{value:.1f}"


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    def clean(cell: object) -> str:
        return (DASH if pd.isna(cell) else str(cell)).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(clean, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(clean, row)) + " |" for row in rows]
    return "\n".join(lines)


def _cell(row: pd.Series, spread: str) -> str:
    """A summary row's mean ± its `spread` column, † where some seed's exit collapsed."""
    if math.isnan(row["mean"]):
        return DASH
    return f"{row['mean']:.1f} ± {fmt(row[spread])}" + (" †" if row.get("collapsed", 0) else "")


def _task_tables(
    table: pd.DataFrame,
    model: str,
    x_name: str,
    x_label: Callable,
    spread: str,
    auc: pd.DataFrame | None = None,
) -> list[str]:
    """One Markdown table per task of a model, the average over tasks first: a row per method (its
    label, seeds, a cell per x, and the cell of its row of `auc` when given)."""
    lines = []
    sub = table[table["model"] == model]
    for task in [AVERAGE] + [t for t in task_order(list(sub["task"].unique())) if t != AVERAGE]:
        part = sub[sub["task"] == task]
        if part.empty:
            continue
        xs = sorted(part[x_name].unique())
        rows = []
        for method in method_order(list(part["method"].unique())):
            by_x = part[part["method"] == method].set_index(x_name)
            row = [METHOD_LABELS.get(method, method), int(by_x["n"].max())]
            row += [_cell(by_x.loc[x], spread) if x in by_x.index else DASH for x in xs]
            if auc is not None:
                own = auc[(auc["model"] == model) & (auc["task"] == task) & (auc["method"] == method)]
                row.append(_cell(own.iloc[0], spread) if len(own) else DASH)
            rows.append(row)
        header = ["method", "seeds", *map(x_label, xs), *(["AUC"] if auc is not None else [])]
        title = "average over tasks" if task == AVERAGE else task
        lines += [f"#### {model} — {title}", "", md_table(header, rows), ""]
    return lines


def render(
    head: list[str], frames: dict[str, pd.DataFrame], figures: list[Path], notes: list[str], select_on: str
) -> str:
    """report.md: the `head` lines, then the tables (`frames`: the CSV tables by file name) and figures."""
    runs = frames["runs.csv"]
    runs = runs.assign(outcome=runs["error"].where(runs["error"] != "", runs["note"]))
    attention = runs[runs["status"] != "completed"]
    lines = [*head, "## Runs not in the tables (failed, missing, incomplete)", ""]
    if attention.empty:
        lines += ["None: every run found completed.", ""]
    else:
        rows = attention[[*RUN_COLUMNS, "outcome"]].itertuples(index=False)
        lines += [md_table([*RUN_COLUMNS, "error / note"], rows), ""]
    lines += [METHOD_NOTE.format(selection=SELECTION_TEXT[select_on]), ""]
    if notes:
        lines += ["Notes:", ""] + [f"- {note}" for note in notes] + [""]

    lines += [f"## Chosen learning rates (Table 2 style, ×1e-5, EE\\MM\\SWEET; selected on {select_on})", ""]
    chosen = frames["chosen_lr.csv"][["model", "task", "ee_mm_sweet_1e-5"]]
    lines += [md_table(["model", "task", "EE\\MM\\SWEET"], chosen.itertuples(index=False)), ""]
    table1, points = frames["table1_exits.csv"], frames["curve_points.csv"]
    models = sorted(set(table1["model"]) | set(points["model"]))
    drawn = {figure.name for figure in figures}
    for model in models:
        if f"lr_search_{model}.png" in drawn:
            lines += [f"![{model} lr search](lr_search_{model}.png)", ""]
    labels = ", ".join(f"{label} = {METHOD_NAMES[m]}" for m, label in METHOD_LABELS.items())
    where = f"lr selected on {select_on}"
    lines += [f"## Individual exits (Table 1 style: mean ± std over seeds; {where})", ""]
    lines += [f"Methods: {labels}.", ""]
    for model in models:
        if f"exits_{model}.png" in drawn:
            lines += [f"![{model} individual exits](exits_{model}.png)", ""]
        lines += _task_tables(table1, model, "layer", lambda x: f"L{x}", "std")
    lines += [f"## Speed-accuracy curves (Figs. 4-6 style: mean ± 95% CI half-width over seeds; {where})", ""]
    for model in models:
        if f"curves_{model}.png" in drawn:
            lines += [f"![{model} speed-accuracy curves](curves_{model}.png)", ""]
        lines += _task_tables(
            points, model, "speedup", lambda x: f"×{speedup_label(x)}", "ci_half_width", frames["auc.csv"]
        )

    flagged = runs[runs["collapsed"] != ""]
    lines += ["## Collapsed exits", ""]
    if flagged.empty:
        lines += ["No exit was flagged as collapsed.", ""]
    else:
        flagged = flagged.assign(chosen=flagged["chosen"].map({True: "yes", False: "no"}))
        header = ["run", "method", "model", "task", "lr", "seed", "in tables", "collapsed (split:layer)"]
        columns = ["run", "method", "model", "task", "lr", "seed", "chosen", "collapsed"]
        lines += [md_table(header, flagged[columns].itertuples(index=False)), ""]
    runs = runs.assign(auc=runs["auc"].map(fmt), chosen=runs["chosen"].map({True: "yes", False: ""}))
    header = [*RUN_COLUMNS, "AUC", "chosen lr", "collapsed", "error / note"]
    rows = runs[[*RUN_COLUMNS, "auc", "chosen", "collapsed", "outcome"]].itertuples(index=False)
    lines += ["## All runs", "", md_table(header, rows), ""]
    return "\n".join(lines)
