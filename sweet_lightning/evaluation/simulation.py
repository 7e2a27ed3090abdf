"""Replay adaptive inference on cached per-exit logits: which exit answers, and what it says.

This is the ground truth the curves are built from, exposed so a real model run (stopping
layer by layer) can be checked against it example by example.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checks import check_exit_scores, check_logits
from .policies import ExitPolicy, get_policy
from .temperature import apply_temperatures, softmax


@dataclass(frozen=True)
class ExitDecisions:
    exit_index: np.ndarray  # [N] 0-based index of the exit that answered each example
    predictions: np.ndarray  # [N] that exit's argmax class


@dataclass(frozen=True)
class ExitInputs:
    """Everything a policy needs, computed once per split and reused across thresholds."""

    probs: np.ndarray  # [E, N, C] softmax after temperature
    exit_predictions: np.ndarray  # [E, N] argmax of the raw logits at each exit
    exit_scores: np.ndarray | None  # [E, N] learned-exit scores, if any


def prepare_exit_inputs(
    logits: np.ndarray, temperatures: np.ndarray | None = None, exit_scores: np.ndarray | None = None
) -> ExitInputs:
    logits = check_logits(logits)
    scaled = logits if temperatures is None else apply_temperatures(logits, temperatures)
    scores = None if exit_scores is None else check_exit_scores(exit_scores, *logits.shape[:2])
    # predictions from the raw logits: temperature must not move the argmax, even by rounding
    return ExitInputs(softmax(scaled), logits.argmax(axis=2), scores)


def decide(policy: ExitPolicy, inputs: ExitInputs, threshold: float) -> ExitDecisions:
    exit_index = policy.exit_indices(inputs.probs, threshold, inputs.exit_scores)
    predictions = inputs.exit_predictions[exit_index, np.arange(exit_index.size)]
    return ExitDecisions(exit_index, predictions)


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
    return decide(exit_policy, prepare_exit_inputs(logits, temperatures, exit_scores), threshold)
