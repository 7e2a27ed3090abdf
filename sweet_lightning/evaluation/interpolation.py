"""Reading a speed-accuracy curve at fixed speedups and as an area (paper App. A).

Both readings use the same piecewise-linear function through the curve's points:
- Several thresholds can land on the same speedup; the best score there is kept (the
  frontier an operator would deploy). For duplicates caused by every threshold sending all
  examples to the same exit the scores are identical anyway.
- interpolate_at never extrapolates: a speedup outside the curve's span (beyond a 1e-9
  tolerance for float noise) reads as NaN.
- auc integrates over [lo, hi] (default [L_1 / L_M, 1], the span of an Early-Exit curve whose
  last exit is the full backbone) by the trapezoid rule and divides by hi - lo, so it is in
  score units (a flat curve at 0.8 has AUC 0.8). A curve that does not span the interval is
  extended flat from its nearest end point (clamp), and auc_coverage reports how much of the
  interval the curve really covers. The curve is cut at hi: its score at hi is interpolated
  between the neighbouring points (for a cascade, usually one below and one above 1), and the
  part beyond hi does not enter the area; those points stay in the curve output.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .curves import SpeedAccuracyCurve

SPAN_TOLERANCE = 1e-9


def default_speedup_points(num_layers: int) -> tuple[float, ...]:
    """(1/L_M, 1/4, 1/2, 3/4, 1): 1/12 for BASE and 1/24 for LARGE backbones (App. A)."""
    return (1.0 / num_layers, 0.25, 0.5, 0.75, 1.0)


def frontier(curve: SpeedAccuracyCurve) -> tuple[np.ndarray, np.ndarray]:
    """Distinct speedups (ascending) and the best score reached at each."""
    if not curve.points:
        raise ValueError("the curve has no points")
    speedups, inverse = np.unique(curve.speedups, return_inverse=True)
    best = np.full(speedups.size, -np.inf)
    np.maximum.at(best, inverse, curve.scores)
    return speedups, best


def interpolate_at(curve: SpeedAccuracyCurve, speedups: Sequence[float] | None = None) -> np.ndarray:
    """Linearly interpolated score at each speedup; NaN outside the curve's span."""
    targets = np.asarray(
        default_speedup_points(curve.num_layers) if speedups is None else speedups, dtype=np.float64
    )
    xs, ys = frontier(curve)
    values = np.interp(targets, xs, ys)
    outside = (targets < xs[0] - SPAN_TOLERANCE) | (targets > xs[-1] + SPAN_TOLERANCE)
    return np.where(outside, np.nan, values)


def auc_interval(
    curve: SpeedAccuracyCurve, lo: float | None = None, hi: float | None = None
) -> tuple[float, float]:
    lo = curve.exit_layers[0] / curve.num_layers if lo is None else float(lo)
    hi = 1.0 if hi is None else float(hi)
    if not lo < hi:
        raise ValueError(f"AUC interval must have lo < hi, got [{lo}, {hi}]")
    return lo, hi


def auc(curve: SpeedAccuracyCurve, lo: float | None = None, hi: float | None = None) -> float:
    """Normalised area under score-vs-speedup over [lo, hi] (trapezoid rule, flat clamp)."""
    lo, hi = auc_interval(curve, lo, hi)
    xs, ys = frontier(curve)
    grid = np.unique(np.concatenate([[lo, hi], xs[(xs > lo) & (xs < hi)]]))
    values = np.interp(grid, xs, ys)  # np.interp holds the end values flat outside the span
    area = np.sum(np.diff(grid) * (values[1:] + values[:-1]) / 2)
    return float(area / (hi - lo))


def auc_coverage(curve: SpeedAccuracyCurve, lo: float | None = None, hi: float | None = None) -> float:
    """Fraction of [lo, hi] that the curve's points actually span (1.0 = no clamping needed)."""
    lo, hi = auc_interval(curve, lo, hi)
    xs, _ = frontier(curve)
    covered = min(hi, xs[-1]) - max(lo, xs[0])
    return float(np.clip(covered / (hi - lo), 0.0, 1.0))
