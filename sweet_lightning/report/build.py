"""From loaded runs to the files of a report directory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from . import aggregate, tables
from .collect import Run, count_statuses
from .figures import write_figures
from .markdown import ReportInputs, render
from .selection import chosen_lrs, lr_search, uneven_seed_notes


def summary_line(runs: Sequence[Run]) -> str:
    counts = count_statuses(runs)
    return f"{len(runs)} runs: " + ", ".join(f"{n} {status}" for status, n in counts.items())


def write_report(runs: Sequence[Run], out: Path, sources: Sequence[Path], speedups: Sequence[float] | None = None,
                 mixed: Sequence[str] = (), select_on: str = "calibration") -> list[Path]:
    """Write report.md, the CSV tables and curves_<model>.png and exits_<model>.png per model; return the paths.
    `select_on`: the split whose AUC chooses each group's lr (report.selection)."""
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
    figures = write_figures(frames["curve_grid.csv"], frames["curve_points.csv"], out, frames["table1_exits.csv"])
    inputs = ReportInputs(
        sources=sources, summary_line=summary_line(runs), runs=frames["runs.csv"],
        chosen_lr=frames["chosen_lr.csv"], table1=frames["table1_exits.csv"], points=frames["curve_points.csv"],
        auc=frames["auc.csv"], figures=figures, notes=notes, mixed=list(mixed), select_on=select_on,
    )
    (out / "report.md").write_text(render(inputs))
    return [out / "report.md", *written, *figures]
