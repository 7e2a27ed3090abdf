"""Speed against accuracy (paper Sec. 3.3, App. A): the cost model, speedup (eq. 1), the curve a
policy's threshold sweep draws, and reading it at fixed speedups and as an area (AUC).

Cost model. Early-Exit / SWEET re-use lower layers, so stopping at exit i costs L_i layers
(`cost_model="early_exit"`). A Multi-Model cascade re-runs independent models, so stopping at
model i costs L_1 + ... + L_i layers (`"cascade"`) and the ratio can exceed 1 (kept as is: that
overhead is the point of the comparison in Sec. 3.3). The ratio is computed from integer layer
counts with a single division, so "everyone at exit i" gives exactly cost_i / L_M (e.g. 6/12
and 11/12 for the paper's example).

A curve's points (one per threshold) are sorted by speedup, ties by threshold. Both readings use
the same piecewise-linear function through them:
- Several thresholds can land on the same speedup; the best score there is kept (the
  frontier an operator would deploy).
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
from dataclasses import dataclass

import numpy as np

from ..metrics import get_metric
from .checks import check_cost_model, check_exit_layers, check_split
from .policies import ExitInputs, ExitPolicy, get_policy

SPAN_TOLERANCE = 1e-9


# ---- cost model and speedup (eq. 1) -------------------------------------------------------------
def speedup_from_counts(
    exit_counts: Sequence[int], exit_layers: Sequence[int], num_layers: int, cost_model: str
) -> float:
    """Eq. 1: sum_i S_i * cost_i / (L_M * sum_i S_i), with S_i the examples answered by exit i."""
    layers = check_exit_layers(exit_layers, num_layers)
    counts = np.asarray(exit_counts, dtype=np.int64)
    if counts.shape != layers.shape or counts.min() < 0 or counts.sum() == 0:
        raise ValueError(f"exit_counts must be {layers.size} non-negative ints with a positive sum")
    # layers an example pays for when it stops at each exit
    cost = np.cumsum(layers) if check_cost_model(cost_model) == "cascade" else layers
    return float(int(counts @ cost) / (num_layers * int(counts.sum())))


def speedup(exit_index: np.ndarray, exit_layers: Sequence[int], num_layers: int, cost_model: str) -> float:
    """Speedup ratio of per-example exit indices [N] (0-based)."""
    counts = np.bincount(np.asarray(exit_index), minlength=len(exit_layers))
    if counts.size != len(exit_layers):
        raise ValueError(f"exit_index refers to exits beyond the {len(exit_layers)} available")
    return speedup_from_counts(counts, exit_layers, num_layers, cost_model)


# ---- the curve -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CurvePoint:
    threshold: float
    speedup: float
    score: float
    exit_counts: tuple[int, ...]  # S_i of eq. 1

    @property
    def exit_fractions(self) -> tuple[float, ...]:
        total = sum(self.exit_counts)
        return tuple(count / total for count in self.exit_counts)


@dataclass(frozen=True)
class SpeedAccuracyCurve:
    points: tuple[CurvePoint, ...]
    exit_layers: tuple[int, ...]
    num_layers: int
    cost_model: str
    metric: str
    policy: str

    @property
    def speedups(self) -> np.ndarray:
        return np.array([point.speedup for point in self.points])

    @property
    def scores(self) -> np.ndarray:
        return np.array([point.score for point in self.points])


def speed_accuracy_curve(
    logits: np.ndarray,
    labels: np.ndarray,
    exit_layers: Sequence[int],
    num_layers: int,
    cost_model: str = "early_exit",
    metric: str = "accuracy",
    policy: str | ExitPolicy = "confidence",
    thresholds: Sequence[float] | None = None,
    temperatures: np.ndarray | None = None,
    exit_scores: np.ndarray | None = None,
    num_thresholds: int = 11,
    policy_kwargs: dict | None = None,
) -> SpeedAccuracyCurve:
    """Sweep thresholds (default: the policy's range, e.g. 11 values over [1/C, 1]) into a curve."""
    logits, labels, layers = check_split(logits, labels, exit_layers, num_layers, cost_model)
    score_fn = get_metric(metric)
    exit_policy = get_policy(policy, **(policy_kwargs or {}))
    if thresholds is None:
        thresholds = exit_policy.default_thresholds(logits.shape[0], logits.shape[2], num_thresholds)
    inputs = ExitInputs.of(logits, temperatures, exit_scores)
    points = []
    for threshold in thresholds:
        decisions = inputs.decide(exit_policy, threshold)
        counts = np.bincount(decisions.exit_index, minlength=layers.size)
        speed = speedup_from_counts(counts, layers, num_layers, cost_model)
        score = score_fn(decisions.predictions, labels)
        points.append(CurvePoint(float(threshold), speed, score, tuple(int(c) for c in counts)))
    points.sort(key=lambda point: (point.speedup, point.threshold))
    return SpeedAccuracyCurve(
        tuple(points), tuple(int(x) for x in layers), int(num_layers), cost_model, metric, exit_policy.name
    )


# ---- reading the curve --------------------------------------------------------------------------
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
