"""Input checks shared by the evaluation modules.

Every check raises a one-line ValueError, so a misconfigured run fails at the first call
instead of producing a plausible-looking but wrong curve.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

COST_MODELS = ("early_exit", "cascade")  # SWEET is costed as "early_exit"; Multi-Model as "cascade"


def check_logits(logits: np.ndarray) -> np.ndarray:
    """Return per-exit logits as float64 [E, N, C] after checking shape and finiteness."""
    arr = np.asarray(logits, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(f"logits must have shape [exits, examples, classes], got shape {arr.shape}")
    num_exits, num_examples, num_classes = arr.shape
    if num_exits < 1 or num_examples < 1 or num_classes < 2:
        raise ValueError(f"logits need >= 1 exit, >= 1 example and >= 2 classes, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("logits contain NaN or inf")
    return arr


def check_labels(labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Return labels as int64 [N], checked against the example and class axes of logits."""
    arr = np.asarray(labels)
    num_examples, num_classes = logits.shape[1], logits.shape[2]
    if arr.shape != (num_examples,):
        raise ValueError(f"labels must have shape ({num_examples},) to match logits, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], got [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64)


def check_exit_layers(
    exit_layers: Sequence[int], num_layers: int, num_exits: int | None = None, key: str = "exit_layers"
) -> np.ndarray:
    """Return exit layers L_i as int64 [E]: positive, strictly increasing, none above L_M. The one
    check of exit layers, for the models (`key="model.exit_layers"`) and for evaluation."""
    layers = np.asarray(exit_layers)
    if layers.size == 0:
        raise ValueError(f"{key} is empty: give at least one layer, e.g. {key}=[1,2,3,6].")
    if layers.ndim != 1 or not np.issubdtype(layers.dtype, np.integer):
        raise ValueError(f"{key} must be a list of ints, got {list(exit_layers)}")
    if num_exits is not None and layers.size != num_exits:
        raise ValueError(f"{key} has {layers.size} entries but logits have {num_exits} exits")
    if int(num_layers) != num_layers or num_layers < 1:
        raise ValueError(f"num_layers must be a positive int, got {num_layers}")
    if np.any(np.diff(layers) <= 0):
        raise ValueError(f"{key}={layers.tolist()} must be strictly increasing, e.g. [1,4,6,12].")
    if layers[0] < 1 or layers[-1] > num_layers:
        backbone = f"this backbone has num_layers={num_layers}, layers 1..{num_layers}"
        raise ValueError(f"{key}={layers.tolist()} out of range: {backbone}.")
    return layers.astype(np.int64)


def check_exit_scores(exit_scores: np.ndarray, num_exits: int, num_examples: int) -> np.ndarray:
    """Return learned 'this exit is correct' scores as float64 [E, N] in [0, 1]."""
    arr = np.asarray(exit_scores, dtype=np.float64)
    if arr.shape != (num_exits, num_examples):
        raise ValueError(f"exit_scores must have shape ({num_exits}, {num_examples}), got {arr.shape}")
    if not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError("exit_scores must be finite and lie in [0, 1]")
    return arr


def check_cost_model(cost_model: str) -> str:
    if cost_model not in COST_MODELS:
        raise ValueError(f"cost_model must be one of {list(COST_MODELS)}, got {cost_model!r}")
    return cost_model


def check_split(
    logits: np.ndarray, labels: np.ndarray, exit_layers: Sequence[int], num_layers: int, cost_model: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One evaluated split's logits, labels and exit layers, checked together (and the cost model)."""
    logits = check_logits(logits)
    check_cost_model(cost_model)
    return logits, check_labels(labels, logits), check_exit_layers(exit_layers, num_layers, logits.shape[0])
