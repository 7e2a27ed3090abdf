"""Exit policies, and replaying them on cached per-exit logits: which exit answers each example.

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

Each rule is written once, in its policy: `may_exit` applies it to arrays (the simulation the
curves are built from) and a `PerExitPolicy`'s `should_exit` to one example's Python floats (the
inference engine's batch-1 path, where a NumPy call costs more than the arithmetic), sharing the
range ends and the comparison. The engine must agree with `simulate_exits` example by example
(tests/test_engine.py).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from .checks import check_exit_scores, check_logits
from .temperature import apply_temperatures, softmax

_TINY = np.finfo(np.float64).tiny  # 0 * log(0) is taken as 0: clamp inside the log only


class ExitPolicy(ABC):
    name: ClassVar[str]
    # whether the decision at exit i reads exit i's outputs alone: the engine then shows the policy
    # only the current exit; otherwise it passes each row's whole history of exits to `may_exit`
    per_exit: ClassVar[bool] = False
    uses_exit_scores: ClassVar[bool] = False  # reads the learned exit scores [E, N]

    def check_threshold(self, threshold: float) -> float:
        """Return the threshold as float, raising a one-line ValueError if out of range ([0, 1] here)."""
        threshold = float(threshold)
        if not 0.0 <= threshold <= 1.0:  # also rejects NaN
            raise ValueError(f"{self.name} threshold must lie in [0, 1], got {threshold}")
        return threshold

    @abstractmethod
    def default_thresholds(self, num_exits: int, num_classes: int, count: int = 11) -> np.ndarray:
        """Thresholds spanning the policy's range, fastest-to-slowest or the reverse."""

    @abstractmethod
    def may_exit(self, probs: np.ndarray, threshold: float, exit_scores: np.ndarray | None) -> np.ndarray:
        """Boolean [E, N]: whether each exit's stopping criterion holds for each example."""

    def only_last_exit_answers(self, threshold: float, num_exits: int) -> bool:
        """Whether no exit before the last can answer at this threshold, whatever the inputs (the
        engine then skips their heads). False unless a policy knows better."""
        return False

    def exit_indices(
        self, probs: np.ndarray, threshold: float, exit_scores: np.ndarray | None = None
    ) -> np.ndarray:
        """Index (0-based) of the exit taken by each example, given probs [E, N, C]."""
        threshold = self.check_threshold(threshold)
        mask = self.may_exit(probs, threshold, exit_scores).copy()
        mask[-1] = True  # the last exit answers whatever is left
        return np.argmax(mask, axis=0)  # argmax returns the first True


class PerExitPolicy(ExitPolicy):
    """A rule on one exit's own outputs: a per-example statistic compared with the threshold
    (`>=` when `leaves_above`, else `<=`), except at the two exact ends of the threshold range.
    A subclass that also reads earlier exits must set `per_exit = False`."""

    per_exit = True
    leaves_above: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "may_exit" in vars(cls) and "should_exit" not in vars(cls):
            # a rule rewritten in may_exit alone: the engine's one-row form (should_exit) and its
            # skipping of heads would not follow it, so the engine treats it as any other policy
            # (each row's whole history, every head run) and still agrees with the simulation
            cls.per_exit = False
            cls.only_last_exit_answers = ExitPolicy.only_last_exit_answers

    def never_exits(self, threshold: float) -> bool:
        """The end of the range where no example leaves before the last exit (here t >= 1)."""
        return threshold >= 1.0

    def always_exits(self, threshold: float, num_classes: int) -> bool:
        """The end of the range where every example leaves at exit 1 (none by default)."""
        return False

    @abstractmethod
    def statistic(self, probs: np.ndarray, exit_scores: np.ndarray | None) -> np.ndarray:
        """Per example of probs [..., C] (and exit scores [...]): the value compared with t."""

    @abstractmethod
    def row_statistic(self, probs: Sequence[float], exit_score: float | None) -> float:
        """`statistic` of one example given as Python floats, with the same IEEE operations."""

    def passes(self, statistic, threshold: float):
        return statistic >= threshold if self.leaves_above else statistic <= threshold

    def may_exit(self, probs: np.ndarray, threshold: float, exit_scores: np.ndarray | None) -> np.ndarray:
        if self.never_exits(threshold):
            return np.zeros(probs.shape[:2], dtype=bool)
        if self.always_exits(threshold, probs.shape[2]):
            return np.ones(probs.shape[:2], dtype=bool)
        return self.passes(self.statistic(probs, exit_scores), threshold)

    def should_exit(self, probs: Sequence[float], threshold: float, exit_score: float | None = None) -> bool:
        """`may_exit` for one example at one exit: its probabilities (and learned exit score)."""
        if self.never_exits(threshold):
            return False
        if self.always_exits(threshold, len(probs)):
            return True
        return bool(self.passes(self.row_statistic(probs, exit_score), threshold))

    def only_last_exit_answers(self, threshold: float, num_exits: int) -> bool:
        return self.never_exits(threshold)


class ConfidencePolicy(PerExitPolicy):
    """Schwartz et al. (2020): exit once the max softmax probability reaches t (the paper's policy)."""

    name = "confidence"

    def default_thresholds(self, num_exits: int, num_classes: int, count: int = 11) -> np.ndarray:
        return np.linspace(1.0 / num_classes, 1.0, count)  # paper Sec. 3.3: 11 values over [1/C, 1]

    def always_exits(self, threshold: float, num_classes: int) -> bool:
        return threshold <= 1.0 / num_classes

    def statistic(self, probs: np.ndarray, exit_scores: np.ndarray | None) -> np.ndarray:
        return probs.max(axis=-1)

    def row_statistic(self, probs: Sequence[float], exit_score: float | None) -> float:
        return max(probs)


class EntropyPolicy(PerExitPolicy):
    """DeeBERT (Xin et al., 2020): exit once the prediction entropy (nats) falls to t."""

    name = "entropy"
    leaves_above = False

    def check_threshold(self, threshold: float) -> float:
        threshold = float(threshold)
        if not threshold >= 0.0:
            raise ValueError(f"entropy threshold must be >= 0 (meaningful up to log C), got {threshold}")
        return threshold

    def default_thresholds(self, num_exits: int, num_classes: int, count: int = 11) -> np.ndarray:
        return np.linspace(0.0, math.log(num_classes), count)

    def never_exits(self, threshold: float) -> bool:
        return threshold <= 0.0

    def always_exits(self, threshold: float, num_classes: int) -> bool:
        return threshold >= math.log(num_classes)

    def statistic(self, probs: np.ndarray, exit_scores: np.ndarray | None) -> np.ndarray:
        return -np.sum(probs * np.log(np.maximum(probs, _TINY)), axis=-1)

    def row_statistic(self, probs: Sequence[float], exit_score: float | None) -> float:
        # NumPy's log (one call); the sum in index order, as NumPy sums a short last axis
        logs = np.log(np.maximum(probs, _TINY)).tolist()
        return -sum(p * log for p, log in zip(probs, logs, strict=True))


class LearnedPolicy(PerExitPolicy):
    """Learning-to-exit (BERxiT; paper Sec. 5): exit once the exit's 'I am correct' score reaches t
    (scores [E, N] from heads trained with the model)."""

    name = "learned"
    uses_exit_scores = True

    def default_thresholds(self, num_exits: int, num_classes: int, count: int = 11) -> np.ndarray:
        return np.linspace(0.0, 1.0, count)

    def statistic(self, probs: np.ndarray, exit_scores: np.ndarray | None) -> np.ndarray:
        _need_scores(exit_scores)
        if exit_scores.shape != probs.shape[:-1]:
            raise ValueError(f"exit_scores must have shape {probs.shape[:-1]}, got {exit_scores.shape}")
        return exit_scores

    def row_statistic(self, probs: Sequence[float], exit_score: float | None) -> float:
        return _need_scores(exit_score)


def _need_scores(scores):
    if scores is None:
        raise ValueError(
            "the learned policy needs exit_scores [exits, examples]: train with exit_policy=learned"
        )
    return scores


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

    def only_last_exit_answers(self, threshold: float, num_exits: int) -> bool:
        # a run of agreeing exits ending at exit i < E is at most i + 1 < E long
        return threshold >= num_exits


POLICIES: dict[str, type[ExitPolicy]] = {
    cls.name: cls for cls in (ConfidencePolicy, EntropyPolicy, PatiencePolicy, LearnedPolicy)
}


def get_policy(name: str | ExitPolicy, **kwargs: object) -> ExitPolicy:
    """Build a policy by registry name; kwargs go to its constructor. Instances pass through."""
    if isinstance(name, ExitPolicy):
        return name
    if name not in POLICIES:
        raise ValueError(f"unknown exit policy {name!r}; valid: {sorted(POLICIES)}")
    return POLICIES[name](**kwargs)


# ---- replaying a policy on cached logits --------------------------------------------------------
class ExitDecisions(NamedTuple):
    exit_index: np.ndarray  # [N] 0-based index of the exit that answered each example
    predictions: np.ndarray  # [N] that exit's argmax class


@dataclass(frozen=True)
class ExitInputs:
    """Everything a policy reads, computed once per split and reused across thresholds."""

    probs: np.ndarray  # [E, N, C] softmax after temperature
    exit_predictions: np.ndarray  # [E, N] argmax of the raw logits at each exit
    exit_scores: np.ndarray | None  # [E, N] learned-exit scores, if any

    @classmethod
    def of(
        cls, logits: np.ndarray, temperatures: np.ndarray | None = None, exit_scores: np.ndarray | None = None
    ) -> ExitInputs:
        logits = check_logits(logits)
        scaled = logits if temperatures is None else apply_temperatures(logits, temperatures)
        scores = None if exit_scores is None else check_exit_scores(exit_scores, *logits.shape[:2])
        # predictions from the raw logits: temperature must not move the argmax, even by rounding
        return cls(softmax(scaled), logits.argmax(axis=2), scores)

    def decide(self, policy: ExitPolicy, threshold: float) -> ExitDecisions:
        exit_index = policy.exit_indices(self.probs, threshold, self.exit_scores)
        return ExitDecisions(exit_index, self.exit_predictions[exit_index, np.arange(exit_index.size)])


def simulate_exits(
    logits: np.ndarray,
    threshold: float,
    policy: str | ExitPolicy = "confidence",
    temperatures: np.ndarray | None = None,
    exit_scores: np.ndarray | None = None,
    policy_kwargs: dict | None = None,
) -> ExitDecisions:
    """Per-example exit index and prediction for one threshold of one policy."""
    exit_policy = get_policy(policy, **(policy_kwargs or {}))
    return ExitInputs.of(logits, temperatures, exit_scores).decide(exit_policy, threshold)
