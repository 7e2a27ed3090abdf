"""Task metrics on hard predictions: accuracy, Matthews correlation (CoLA) and binary F1.

Implemented in numpy so evaluation has no dependency on sklearn/torchmetrics. Undefined
values (a zero denominator) are reported as 0.0, the convention GLUE scorers use.
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
