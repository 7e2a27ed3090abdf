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
