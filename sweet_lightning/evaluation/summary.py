"""One call from cached per-exit logits to a JSON-ready evaluation of one split: temperatures, each
exit alone (paper Table 1) and whether it learned, the speed-accuracy curve, its AUC and fixed speedups.

An exit is flagged as collapsed when it predicts a single class or its accuracy equals the
majority-class baseline. Matching that baseline exactly is what a collapsed head does on an
imbalanced split (CoLA, MRPC, QQP); a head that learned something will rarely match it to the
example, but on tiny splits a coincidence is possible, so a flag is a prompt to look, not a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..metrics import get_metric
from .checks import check_labels, check_logits, check_split
from .curves import (
    auc,
    auc_coverage,
    auc_interval,
    default_speedup_points,
    interpolate_at,
    speed_accuracy_curve,
)
from .temperature import bound_hits, fit_temperatures, warn_bound_hits


def evaluate_logits(
    logits: np.ndarray,
    labels: np.ndarray,
    exit_layers: Sequence[int],
    num_layers: int,
    cost_model: str = "early_exit",
    metric: str = "accuracy",
    extra_metrics: Sequence[str] = (),
    policy: str = "confidence",
    policy_kwargs: dict | None = None,
    thresholds: Sequence[float] | None = None,
    num_thresholds: int = 11,
    speedup_points: Sequence[float] | None = None,
    temperatures: Sequence[float] | None = None,
    temperature_source: str = "given",
    calibration_logits: np.ndarray | None = None,
    calibration_labels: np.ndarray | None = None,
    exit_scores: np.ndarray | None = None,
    auc_lo: float | None = None,
    auc_hi: float | None = None,
) -> dict:
    """Evaluate an adaptive model from its per-exit logits [E, N, C] on one split.

    Temperatures: pass them, or pass calibration logits+labels to fit them (not both); with
    neither, no scaling is applied (all 1.0). Given temperatures are recorded with
    `temperature_source` ("fitted" where the caller fitted them on calibration logits itself, as
    AdaptiveEvaluation does once for every split). Each exit's `temperature_at_bound` says whether
    its temperature sits at the fit's search bound ("lower": the exit always fires, "upper":
    it never does; null otherwise); a fit that lands there warns, naming the exit. Scores in
    "at_speedup" are null where the curve does not reach that speedup.
    """
    logits, labels, layers = check_split(logits, labels, exit_layers, num_layers, cost_model)
    if temperatures is not None and calibration_logits is not None:
        raise ValueError("pass either temperatures or calibration_logits, not both")
    if (calibration_logits is None) != (calibration_labels is None):
        raise ValueError("calibration_logits and calibration_labels go together")
    if calibration_logits is not None:
        temps, source = fit_temperatures(calibration_logits, calibration_labels), "fitted"
    elif temperatures is not None:
        temps, source = np.asarray(temperatures, dtype=np.float64), temperature_source
    else:
        temps, source = np.ones(logits.shape[0]), "none"
    if temps.shape != (logits.shape[0],):
        raise ValueError(f"need {logits.shape[0]} temperatures (one per exit), got shape {temps.shape}")
    at_bound = bound_hits(temps)
    if calibration_logits is not None:  # given temperatures were warned about where they were fitted
        warn_bound_hits(at_bound, layers)

    curve = speed_accuracy_curve(
        logits,
        labels,
        layers,
        num_layers,
        cost_model=cost_model,
        metric=metric,
        policy=policy,
        thresholds=thresholds,
        temperatures=temps,
        exit_scores=exit_scores,
        num_thresholds=num_thresholds,
        policy_kwargs=policy_kwargs,
    )
    lo, hi = auc_interval(curve, auc_lo, auc_hi)
    points = default_speedup_points(num_layers) if speedup_points is None else tuple(speedup_points)
    at_speedup = interpolate_at(curve, points)

    extras = [name for name in extra_metrics if name != metric]
    per_metric = {name: individual_exit_scores(logits, labels, name) for name in [metric, *extras]}
    collapsed = collapsed_exits(logits, labels)
    exits = [
        {"exit": i + 1, "layer": int(layer), "score": float(per_metric[metric][i])}
        | {name: float(per_metric[name][i]) for name in extras}
        | {"collapsed": bool(collapsed[i]), "temperature_at_bound": at_bound[i]}
        for i, layer in enumerate(layers)
    ]

    return {
        "policy": curve.policy,
        "cost_model": cost_model,
        "metric": metric,
        "exit_layers": [int(x) for x in layers],
        "num_layers": int(num_layers),
        "num_examples": int(labels.size),
        "temperatures": [float(t) for t in temps],
        "temperature_source": source,
        "exits": exits,
        "curve": [
            {
                "threshold": point.threshold,
                "speedup": point.speedup,
                "score": point.score,
                "exit_fractions": list(point.exit_fractions),
            }
            for point in curve.points
        ],
        "auc": auc(curve, lo, hi),
        "auc_interval": [lo, hi],
        "auc_coverage": auc_coverage(curve, lo, hi),
        # strict JSON has no NaN: an unreachable speedup is reported as null
        "at_speedup": {
            f"{x:.4f}": None if math.isnan(v) else float(v) for x, v in zip(points, at_speedup, strict=True)
        },
    }


def individual_exit_scores(logits: np.ndarray, labels: np.ndarray, metric: str = "accuracy") -> np.ndarray:
    """Score of each exit alone on every example ([E]); paper Table 1."""
    logits = check_logits(logits)
    labels = check_labels(labels, logits)
    score_fn = get_metric(metric)
    return np.array([score_fn(exit_logits.argmax(axis=1), labels) for exit_logits in logits])


def collapsed_exits(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Boolean [E]: exit i predicts a single class, or its accuracy equals the majority baseline."""
    logits = check_logits(logits)
    labels = check_labels(labels, logits)
    predictions = logits.argmax(axis=2)  # [E, N]
    single_class = np.all(predictions == predictions[:, :1], axis=1)
    # compare integer counts, not float accuracies, so "equal" means equal
    majority_correct = np.bincount(labels).max()
    at_baseline = np.sum(predictions == labels[None, :], axis=1) == majority_correct
    return single_class | at_baseline
