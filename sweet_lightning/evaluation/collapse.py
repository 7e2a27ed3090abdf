"""Flag exits that did not learn: a constant predictor, or no better than the majority class.

Matching the majority-class accuracy exactly is what a collapsed head does on an imbalanced
split (CoLA, MRPC, QQP); a head that learned something will rarely match it to the example,
but on tiny splits a coincidence is possible, so treat a flag as a prompt to look, not a verdict.
"""

from __future__ import annotations

import numpy as np

from .checks import check_labels, check_logits


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
