"""Show a batch's gradient report (see `gradients.batch_report`) as a layers x classifier-pairs
grid: a heatmap like paper Fig. 3, and the same grid as a text table for logs.

Cells: a mean row-cosine in [-1, 1]; "no gradient" (one classifier's gradient is exactly
zero, e.g. a later SWEET classifier on an earlier layer) hatched grey; blank where the pair
does not reach the layer (a classifier before it).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from sweet_lightning.analysis.gradients import NO_GRADIENT

HATCHED = dict(facecolor="0.85", edgecolor="0.5", hatch="///")  # a "no gradient" cell and its legend


def _pair_key(label: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", label))


def grid(report: dict[str, dict]) -> tuple[list[str], list[str], dict[tuple[int, int], float | str]]:
    """(row labels, column labels, {(row, col): cell}) of a batch report; absent = blank."""
    layers = sorted(report, key=int)
    pairs = sorted({p for layer in layers for p in report[layer]["pairs"]}, key=_pair_key)
    cells = {
        (r, c): report[layer]["pairs"][pair]
        for r, layer in enumerate(layers)
        for c, pair in enumerate(pairs)
        if pair in report[layer]["pairs"]
    }
    return [f"Layer {layer}" for layer in layers], pairs, cells


def _notes(report: dict[str, dict]) -> list[str]:
    return [
        f"Layer {layer}: {report[layer]['note']}"
        for layer in sorted(report, key=int)
        if "note" in report[layer]
    ]


def format_table(report: dict[str, dict], title: str = "") -> str:
    rows, cols, cells = grid(report)
    width = max([len(NO_GRADIENT), *map(len, cols)]) + 2
    lines = [title] if title else []
    if not cols:
        return "\n".join([*lines, "No classifier pair shares a layer: nothing to compare.", *_notes(report)])
    lines.append("".ljust(10) + "".join(c.rjust(width) for c in cols))
    for r, row in enumerate(rows):
        row_cells = [cells.get((r, c), "") for c in range(len(cols))]
        texts = [(f"{cell:+.3f}" if isinstance(cell, float) else cell).rjust(width) for cell in row_cells]
        lines.append(row.ljust(10) + "".join(texts))
    return "\n".join(lines + _notes(report))


def plot_heatmap(report: dict[str, dict], path: str | Path, title: str = "") -> Path:
    # the object API (no pyplot): no global backend or figure state, safe on headless machines
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    rows, cols, cells = grid(report)
    fig = Figure(figsize=(max(4.5, 1.0 * len(cols) + 2.5), max(2.5, 0.6 * len(rows) + 1.8)))
    ax = fig.add_subplot()
    if title:
        ax.set_title(title, fontsize=10)
    if not cols:  # e.g. Multi-Model: no layer is shared by two classifiers
        ax.axis("off")
        message = "No classifier pair shares a layer:\nnothing to compare.\n\n" + "\n".join(_notes(report))
        ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=8, transform=ax.transAxes)
        fig.savefig(path, dpi=150, bbox_inches="tight")
        return Path(path)
    values = np.full((len(rows), len(cols)), np.nan)  # NaN: blank or hatched
    for (r, c), cell in cells.items():
        if cell == NO_GRADIENT:
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, **HATCHED))
            text = "no\ngradient"
            style = dict(fontsize=7, bbox=dict(facecolor="0.85", edgecolor="none", pad=1))
        else:
            values[r, c] = cell
            text, style = f"{cell:.2f}", dict(fontsize=8, color="white" if abs(cell) > 0.6 else "black")
        ax.text(c, r, text, ha="center", va="center", **style)
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu_r", vmin=-1.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=45 if len(cols) > 6 else 0)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("classifier pair")
    fig.colorbar(image, ax=ax, label="mean row cosine")
    if any(cell == NO_GRADIENT for cell in cells.values()):
        ax.legend(
            handles=[Patch(**HATCHED, label="no gradient (exactly 0)")],
            loc="upper center",
            bbox_to_anchor=(0.5, -0.25),
            fontsize=7,
            frameon=False,
        )
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return Path(path)
