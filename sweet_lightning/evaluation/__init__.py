"""Evaluation arithmetic on cached per-exit logits, one concept a module: checks -> temperature ->
policies -> curves -> summary (one split's JSON-ready evaluation). `callback` evaluates a run (import it
from there: it needs Lightning). The names imported here are the package's interface.
"""
# ruff: noqa: F401

from ..metrics import get_metric
from .curves import (
    CurvePoint,
    SpeedAccuracyCurve,
    auc,
    auc_coverage,
    default_speedup_points,
    interpolate_at,
    speed_accuracy_curve,
    speedup,
    speedup_from_counts,
)
from .policies import POLICIES, ExitPolicy, PerExitPolicy, get_policy, simulate_exits
from .summary import collapsed_exits, evaluate_logits, individual_exit_scores
from .temperature import apply_temperatures, fit_temperatures, softmax, softmax_row, tempered_softmax
