"""Task metrics, and the names under which a run reports them.

Metrics score hard predictions (numpy, so evaluation needs neither sklearn nor torchmetrics):
accuracy, Matthews correlation (CoLA) and binary F1 (MRPC, QQP), keyed by the names in the task
table. Undefined values (a zero denominator) are reported as 0.0, the convention GLUE scorers use.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def matthews_corrcoef(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class MCC (Gorodkin's R_K); equals the usual binary MCC for two classes.

    Returns 0.0 when undefined, i.e. when predictions or labels contain a single class.
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    classes = np.union1d(predictions, labels)
    pred_counts = np.array([np.sum(predictions == k) for k in classes], dtype=np.float64)
    true_counts = np.array([np.sum(labels == k) for k in classes], dtype=np.float64)
    correct = float(np.sum(predictions == labels))
    total = float(labels.size)
    # float arithmetic on purpose: the products overflow int64 for large splits
    cov_pred_true = correct * total - float(pred_counts @ true_counts)
    cov_pred = total**2 - float(pred_counts @ pred_counts)
    cov_true = total**2 - float(true_counts @ true_counts)
    if cov_pred == 0.0 or cov_true == 0.0:
        return 0.0
    return float(cov_pred_true / np.sqrt(cov_pred * cov_true))


def binary_f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    """F1 of the positive class 1 (MRPC, QQP). Returns 0.0 when there are no positives at all."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if not (np.isin(predictions, (0, 1)).all() and np.isin(labels, (0, 1)).all()):
        raise ValueError("f1 is binary: predictions and labels must be 0 or 1")
    true_pos = float(np.sum((predictions == 1) & (labels == 1)))
    false_pos = float(np.sum((predictions == 1) & (labels == 0)))
    false_neg = float(np.sum((predictions == 0) & (labels == 1)))
    denominator = 2 * true_pos + false_pos + false_neg
    return 0.0 if denominator == 0 else 2 * true_pos / denominator


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "mcc": matthews_corrcoef,
    "f1": binary_f1,
}


def get_metric(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; valid: {sorted(METRICS)}")
    return METRICS[name]


def run_metrics(
    individual_scores: list[float], auc: float | None = None, calibration_auc: float | None = None
) -> dict[str, float]:
    """A run's headline numbers on its primary eval split, by the names under which the evaluation
    callback logs them every validation epoch and results.json stores them: what `optimized_metric`
    (returned to sweepers, monitored by checkpoints) can name. `individual_scores`: each exit's
    score alone, first to last."""
    metrics = {"val/score": individual_scores[-1]}
    metrics.update({f"val/exit{i}/score": s for i, s in enumerate(individual_scores, start=1)})
    if auc is not None:
        metrics["val/auc"] = auc
    if calibration_auc is not None:  # the hold-out's AUC (model_selection), logged by the callback
        metrics["val/calibration/auc"] = calibration_auc
    return metrics


def check_optimized_metric(name: str, num_exits: int) -> None:
    names = list(run_metrics([0.0] * max(num_exits, 1), auc=0.0, calibration_auc=0.0))
    if name not in names:
        raise ValueError(
            f"optimized_metric={name} is not a metric a run reports; use one of: {', '.join(names)}."
        )
