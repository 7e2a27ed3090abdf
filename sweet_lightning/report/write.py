"""Step 4 of the report: write its directory: the CSV tables, the figures, and report.md (the tables
as Markdown, with the runs that need attention listed first)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
) -> list[Path]:
    """Write report.md, the CSV tables and curves_<model>.png and exits_<model>.png per model; return the paths.
    `select_on`: the split whose AUC chooses each group's lr (aggregate.lr_search); `methods`: the
    `methods_line` of a `--methods` filter (runs holds the kept runs only), empty without one;
    `title`: report.md's heading."""
    out.mkdir(parents=True, exist_ok=True)
    search = lr_search(runs, select_on)
    chosen = chosen_lrs(search)
    summary, notes = aggregate.summaries(aggregate.observations(runs, chosen, speedups))
    notes = [*uneven_seed_notes(search), *notes]
    frames = {
        "runs.csv": tables.runs_table(runs, chosen, sources),
        "chosen_lr.csv": tables.chosen_lr_table(search),
        "lr_search.csv": search,
        "table1_exits.csv": tables.table1_exits(summary),
        "curve_points.csv": tables.curve_points(summary),
        "curve_grid.csv": tables.curve_grid(summary),
        "auc.csv": tables.auc_table(summary),
    }
    written = []
    for name, frame in frames.items():
        frame = frame.assign(lr_selected_on=select_on)  # every table says which lr selection made it
        # 10 significant digits: exact enough to recompute from, without float noise like 56.00000000000001
        frame.to_csv(out / name, index=False, float_format="%.10g")
        written.append(out / name)
    figures = write_figures(
        frames["curve_grid.csv"], frames["curve_points.csv"], out, frames["table1_exits.csv"]
    )
    inputs = ReportInputs(
        sources=sources,
        summary_line=summary_line(runs),
        runs=frames["runs.csv"],
        chosen_lr=frames["chosen_lr.csv"],
        table1=frames["table1_exits.csv"],
        points=frames["curve_points.csv"],
        auc=frames["auc.csv"],
        figures=figures,
        notes=notes,
        mixed=list(mixed),
        select_on=select_on,
        title=title,
        methods=methods,
    )
    (out / "report.md").write_text(render(inputs))
    return [out / "report.md", *written, *figures]


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


@dataclass
class ReportInputs:
    sources: Sequence[Path]
    summary_line: str
    runs: pd.DataFrame
    chosen_lr: pd.DataFrame
    table1: pd.DataFrame
    points: pd.DataFrame
    auc: pd.DataFrame
    figures: Sequence[Path] = ()
    notes: Sequence[str] = ()
    mixed: Sequence[str] = field(default_factory=list)  # problems overridden with --allow-mixed
    select_on: str = "calibration"  # the split whose AUC chose the lrs
    methods: str = ""  # methods_line of a --methods filter; empty: every method found
    title: str = DEFAULT_TITLE


def fmt(value: float, digits: int = 1) -> str:
    return (
        DASH if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
    )


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def clean(cell: object) -> str:
        text = DASH if cell is None or (isinstance(cell, float) and math.isnan(cell)) else str(cell)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(clean, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(clean, row)) + " |" for row in rows]
    return "\n".join(lines)


def _cell(mean: float, spread: float, collapsed: int = 0) -> str:
    if math.isnan(mean):
        return DASH
    return f"{mean:.1f} ± {fmt(spread)}" + (" †" if collapsed else "")


def _task_tables(
    table: pd.DataFrame,
    model: str,
    x_name: str,
    x_label: Callable,
    cell: Callable,
    auc: Callable[[str, str], str] | None = None,
) -> list[str]:
    """One Markdown table per task of a model, the average over tasks first: a row per method (its
    label, seeds, a `cell` per x, and its `auc(task, method)` when given)."""
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
            row = [METHOD_LABELS.get(method, method), int(by_x["n"].max()) if len(by_x) else 0]
            row += [cell(by_x.loc[x]) if x in by_x.index else DASH for x in xs]
            rows.append(row + ([auc(task, method)] if auc else []))
        header = ["method", "seeds", *map(x_label, xs), *(["AUC"] if auc else [])]
        title = "average over tasks" if task == AVERAGE else task
        lines += [f"#### {model} — {title}", "", md_table(header, rows), ""]
    return lines


def _exit_section(table1: pd.DataFrame, model: str) -> list[str]:
    return _task_tables(
        table1, model, "layer", lambda x: f"L{x}", lambda r: _cell(r["mean"], r["std"], r["collapsed"])
    )


def _curve_section(points: pd.DataFrame, auc: pd.DataFrame, model: str) -> list[str]:
    auc = auc[auc["model"] == model]

    def auc_cell(task: str, method: str) -> str:
        row = auc[(auc["task"] == task) & (auc["method"] == method)]
        return _cell(row["mean"].iloc[0], row["ci_half_width"].iloc[0]) if len(row) else DASH

    return _task_tables(
        points,
        model,
        "speedup",
        lambda x: f"×{speedup_label(x)}",
        lambda r: _cell(r["mean"], r["ci_half_width"]),
        auc_cell,
    )


def render(inputs: ReportInputs) -> str:
    runs = inputs.runs
    lines = [
        f"# {inputs.title}",
        "",
        inputs.summary_line,
        "",
        "Sweeps: " + ", ".join(f"`{p}`" for p in inputs.sources),
        "",
    ]
    if inputs.methods:  # a filtered report says so, or a reader would take it for the whole sweep
        lines += [f"Methods (`--methods`): {inputs.methods}.", ""]
    if inputs.mixed:
        lines += ["> **Warning: mixed configurations averaged (`--allow-mixed`).**", ""]
        lines += [f"> - {problem}" for problem in inputs.mixed] + [""]
    attention = runs[runs["status"] != "completed"]
    lines += ["## Runs not in the tables (failed, missing, incomplete)", ""]
    if attention.empty:
        lines += ["None: every run found completed.", ""]
    else:
        header = ["run", "status", "method", "model", "task", "lr", "seed", "error / note"]
        rows = [
            [r.run, r.status, r.method, r.model, r.task, r.lr, r.seed, r.error or r.note]
            for r in attention.itertuples()
        ]
        lines += [md_table(header, rows), ""]
    lines += [METHOD_NOTE.format(selection=SELECTION_TEXT[inputs.select_on]), ""]
    if inputs.notes:
        lines += ["Notes:", ""] + [f"- {note}" for note in inputs.notes] + [""]

    lines += [
        f"## Chosen learning rates (Table 2 style, ×1e-5, EE\\MM\\SWEET; selected on {inputs.select_on})",
        "",
    ]
    chosen = inputs.chosen_lr
    lines += [
        md_table(
            ["model", "task", "EE\\MM\\SWEET"],
            [[r["model"], r["task"], r["ee_mm_sweet_1e-5"]] for _, r in chosen.iterrows()],
        ),
        "",
    ]
    models = sorted(set(inputs.table1["model"]) | set(inputs.points["model"]))
    labels = ", ".join(f"{label} = {METHOD_NAMES[m]}" for m, label in METHOD_LABELS.items())
    where = f"lr selected on {inputs.select_on}"
    lines += [
        f"## Individual exits (Table 1 style: mean ± std over seeds; {where})",
        "",
        f"Methods: {labels}.",
        "",
    ]
    for model in models:
        figure = next((f for f in inputs.figures if f.name == f"exits_{model}.png"), None)
        lines += [f"![{model} individual exits]({figure.name})", ""] if figure else []
        lines += _exit_section(inputs.table1, model)
    lines += [f"## Speed-accuracy curves (Figs. 4-6 style: mean ± 95% CI half-width over seeds; {where})", ""]
    for model in models:
        figure = next((f for f in inputs.figures if f.name == f"curves_{model}.png"), None)
        lines += [f"![{model} speed-accuracy curves]({figure.name})", ""] if figure else []
        lines += _curve_section(inputs.points, inputs.auc, model)

    flagged = runs[runs["collapsed"] != ""]
    lines += ["## Collapsed exits", ""]
    if flagged.empty:
        lines += ["No exit was flagged as collapsed.", ""]
    else:
        rows = [
            [r.run, r.method, r.model, r.task, r.lr, r.seed, "yes" if r.chosen else "no", r.collapsed]
            for r in flagged.itertuples()
        ]
        lines += [
            md_table(
                ["run", "method", "model", "task", "lr", "seed", "in tables", "collapsed (split:layer)"], rows
            ),
            "",
        ]
    lines += ["## All runs", ""]
    rows = [
        [
            r.run,
            r.status,
            r.method,
            r.model,
            r.task,
            r.lr,
            r.seed,
            fmt(r.auc),
            "yes" if r.chosen else "",
            r.collapsed,
            r.error or r.note,
        ]
        for r in runs.itertuples()
    ]
    lines += [
        md_table(
            [
                "run",
                "status",
                "method",
                "model",
                "task",
                "lr",
                "seed",
                "AUC",
                "chosen lr",
                "collapsed",
                "error / note",
            ],
            rows,
        ),
        "",
    ]
    return "\n".join(lines)
