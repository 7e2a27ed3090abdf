"""Speed-accuracy curves (paper Sec. 3.3) and individual exit scores (paper Table 1).

A curve sweeps a policy's threshold; each point records the threshold, the speedup ratio
(eq. 1), the task score of the adaptive model and the fraction of examples answered by each
exit. Points are sorted by speedup (ties by threshold) so they can be read as a function.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..metrics import get_metric
from .checks import check_exit_layers, check_kind, check_labels, check_logits
from .policies import ExitPolicy, get_policy
from .simulation import decide, prepare_exit_inputs
from .speedup import speedup_from_counts


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
    kind: str
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
    kind: str = "early_exit",
    metric: str = "accuracy",
    policy: str | ExitPolicy = "confidence",
    thresholds: Sequence[float] | None = None,
    temperatures: np.ndarray | None = None,
    exit_scores: np.ndarray | None = None,
    num_thresholds: int = 11,
    policy_kwargs: dict | None = None,
) -> SpeedAccuracyCurve:
    """Sweep thresholds (default: the policy's range, e.g. 11 values over [1/C, 1]) into a curve."""
    logits = check_logits(logits)
    labels = check_labels(labels, logits)
    layers = check_exit_layers(exit_layers, num_layers, logits.shape[0])
    check_kind(kind)
    score_fn = get_metric(metric)
    exit_policy = get_policy(policy, **(policy_kwargs or {}))
    if thresholds is None:
        thresholds = exit_policy.default_thresholds(logits.shape[0], logits.shape[2], num_thresholds)
    inputs = prepare_exit_inputs(logits, temperatures, exit_scores)
    points = []
    for threshold in thresholds:
        decisions = decide(exit_policy, inputs, threshold)
        counts = np.bincount(decisions.exit_index, minlength=layers.size)
        points.append(
            CurvePoint(
                threshold=float(threshold),
                speedup=speedup_from_counts(counts, layers, num_layers, kind),
                score=score_fn(decisions.predictions, labels),
                exit_counts=tuple(int(c) for c in counts),
            )
        )
    points.sort(key=lambda point: (point.speedup, point.threshold))
    return SpeedAccuracyCurve(
        tuple(points), tuple(int(x) for x in layers), int(num_layers), kind, metric, exit_policy.name
    )


def individual_exit_scores(logits: np.ndarray, labels: np.ndarray, metric: str = "accuracy") -> np.ndarray:
    """Score of each exit alone on every example ([E]); paper Table 1."""
    logits = check_logits(logits)
    labels = check_labels(labels, logits)
    score_fn = get_metric(metric)
    return np.array([score_fn(exit_logits.argmax(axis=1), labels) for exit_logits in logits])
