"""Exit policies: given per-exit probabilities, which exit answers each example.

A policy turns a threshold into a boolean "may exit here" mask [E, N]; the example leaves at
the first exit whose mask is True, and the last exit always answers. Larger thresholds are
always slower (later exits) for confidence, learned and patience, and faster for entropy.

Tie rule (documented, tested). Comparisons are inclusive (max prob >= t, entropy <= t,
score >= t), and the two ends of each threshold range are made exact rather than left to
floating point, so a curve over the default range always spans "everything at exit 1" to
"everything at the last exit":
- confidence / learned: t >= 1 means "never exit early" (a saturated float softmax or sigmoid
  is exactly 1.0, which ">= 1" would otherwise let out); t <= 1/C (confidence) sends all to exit 1.
- entropy: t <= 0 means "never exit early"; t >= log C sends all to exit 1.
- patience: p = 1 sends all to exit 1; p >= E sends all to the last exit.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np


class ExitPolicy(ABC):
    name: ClassVar[str]

    @abstractmethod
    def check_threshold(self, threshold: float) -> float:
        """Return the threshold as float, raising a one-line ValueError if out of range."""

    @abstractmethod
    def default_thresholds(self, num_exits: int, num_classes: int, count: int = 11) -> np.ndarray:
        """Thresholds spanning the policy's range, fastest-to-slowest or the reverse."""

    @abstractmethod
    def may_exit(self, probs: np.ndarray, threshold: float, exit_scores: np.ndarray | None) -> np.ndarray:
        """Boolean [E, N]: whether each exit's stopping criterion holds for each example."""

    def exit_indices(
        self, probs: np.ndarray, threshold: float, exit_scores: np.ndarray | None = None
    ) -> np.ndarray:
        """Index (0-based) of the exit taken by each example, given probs [E, N, C]."""
        threshold = self.check_threshold(threshold)
        mask = self.may_exit(probs, threshold, exit_scores).copy()
        mask[-1] = True  # the last exit answers whatever is left
        return np.argmax(mask, axis=0)  # argmax returns the first True


def _check_unit_interval(name: str, threshold: float) -> float:
    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} threshold must lie in [0, 1], got {threshold}")
    return threshold


class ConfidencePolicy(ExitPolicy):
    """Schwartz et al. (2020): exit once the max softmax probability reaches t (the paper's policy)."""

    name = "confidence"

    def check_threshold(self, threshold: float) -> float:
        return _check_unit_interval(self.name, threshold)

    def default_thresholds(self, num_exits: int, num_classes: int, count: int = 11) -> np.ndarray:
        return np.linspace(1.0 / num_classes, 1.0, count)  # paper Sec. 3.3: 11 values over [1/C, 1]

    def may_exit(self, probs: np.ndarray, threshold: float, exit_scores: np.ndarray | None) -> np.ndarray:
        if threshold >= 1.0:
            return np.zeros(probs.shape[:2], dtype=bool)
        if threshold <= 1.0 / probs.shape[2]:
            return np.ones(probs.shape[:2], dtype=bool)
        return probs.max(axis=2) >= threshold


class EntropyPolicy(ExitPolicy):
    """DeeBERT (Xin et al., 2020): exit once the prediction entropy (nats) falls to t."""

    name = "entropy"

    def check_threshold(self, threshold: float) -> float:
        threshold = float(threshold)
        if not threshold >= 0.0:
            raise ValueError(f"entropy threshold must be >= 0 (meaningful up to log C), got {threshold}")
        return threshold

    def default_thresholds(self, num_exits: int, num_classes: int, count: int = 11) -> np.ndarray:
        return np.linspace(0.0, math.log(num_classes), count)

    def may_exit(self, probs: np.ndarray, threshold: float, exit_scores: np.ndarray | None) -> np.ndarray:
        if threshold <= 0.0:
            return np.zeros(probs.shape[:2], dtype=bool)
        if threshold >= math.log(probs.shape[2]):
            return np.ones(probs.shape[:2], dtype=bool)
        # 0 * log(0) is taken as 0: clamp inside the log only
        entropy = -np.sum(probs * np.log(np.maximum(probs, np.finfo(np.float64).tiny)), axis=2)
        return entropy <= threshold


class PatiencePolicy(ExitPolicy):
    """PABEE (Zhou et al., 2020): exit once the last p consecutive classifiers agree on the argmax."""

    name = "patience"

    def check_threshold(self, threshold: float) -> float:
        if not (float(threshold) >= 1 and float(threshold).is_integer()):
            raise ValueError(f"patience must be an integer >= 1, got {threshold}")
        return float(threshold)

    def default_thresholds(self, num_exits: int, num_classes: int, count: int = 11) -> np.ndarray:
        return np.arange(1, num_exits + 1, dtype=np.float64)  # count is ignored: p in 1..E

    def may_exit(self, probs: np.ndarray, threshold: float, exit_scores: np.ndarray | None) -> np.ndarray:
        patience = int(threshold)
        predictions = probs.argmax(axis=2)
        # run[i] = how many classifiers up to and including i agree with classifier i in a row
        run = np.ones(predictions.shape, dtype=np.int64)
        for i in range(1, predictions.shape[0]):
            run[i] = np.where(predictions[i] == predictions[i - 1], run[i - 1] + 1, 1)
        return run >= patience


class LearnedPolicy(ExitPolicy):
    """Learning-to-exit (BERxiT; paper Sec. 5): exit once the exit's 'I am correct' score reaches t.

    The scores [E, N] come from heads trained with the model; only their values are used here.
    """

    name = "learned"

    def check_threshold(self, threshold: float) -> float:
        return _check_unit_interval(self.name, threshold)

    def default_thresholds(self, num_exits: int, num_classes: int, count: int = 11) -> np.ndarray:
        return np.linspace(0.0, 1.0, count)

    def may_exit(self, probs: np.ndarray, threshold: float, exit_scores: np.ndarray | None) -> np.ndarray:
        if exit_scores is None:
            raise ValueError("the learned policy needs exit_scores [exits, examples]: train with exit_policy=learned")
        if exit_scores.shape != probs.shape[:2]:
            raise ValueError(f"exit_scores must have shape {probs.shape[:2]}, got {exit_scores.shape}")
        if threshold >= 1.0:
            return np.zeros(probs.shape[:2], dtype=bool)
        return exit_scores >= threshold


POLICIES: dict[str, type[ExitPolicy]] = {
    cls.name: cls for cls in (ConfidencePolicy, EntropyPolicy, PatiencePolicy, LearnedPolicy)
}


def register_policy(cls: type[ExitPolicy]) -> type[ExitPolicy]:
    """Add a policy class to the registry (usable as a decorator)."""
    POLICIES[cls.name] = cls
    return cls


def get_policy(name: str | ExitPolicy, **kwargs: object) -> ExitPolicy:
    """Build a policy by registry name; kwargs go to its constructor. Instances pass through."""
    if isinstance(name, ExitPolicy):
        return name
    if name not in POLICIES:
        raise ValueError(f"unknown exit policy {name!r}; valid: {sorted(POLICIES)}")
    return POLICIES[name](**kwargs)
