"""Task metrics on predicted labels (torchmetrics), keyed by the names in the task table."""

from __future__ import annotations

import torch
from torchmetrics.functional import accuracy, f1_score, matthews_corrcoef


def compute_metric(name: str, preds: torch.Tensor, labels: torch.Tensor, num_labels: int) -> float:
    """Score in [0, 1] (MCC in [-1, 1]) of integer predictions against integer labels."""
    if name == "accuracy":
        return float(accuracy(preds, labels, task="multiclass", num_classes=num_labels))
    if name == "mcc":
        return float(matthews_corrcoef(preds, labels, task="multiclass", num_classes=num_labels))
    if name == "f1":  # binary F1 of the positive class (MRPC, QQP)
        return float(f1_score(preds, labels, task="binary"))
    raise ValueError(f"Unknown metric {name!r}: use accuracy, mcc or f1.")


def run_metrics(
    exit_scores: list[float], auc: float | None = None, calibration_auc: float | None = None
) -> dict[str, float]:
    """A run's headline numbers on its primary eval split, by the names under which the module logs
    them every validation epoch (`val/auc` by the evaluation callback) and results.json stores
    them: what `optimized_metric` (returned to sweepers, monitored by checkpoints) can name."""
    metrics = {"val/score": exit_scores[-1]}
    metrics.update({f"val/exit{i}/score": s for i, s in enumerate(exit_scores, start=1)})
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
