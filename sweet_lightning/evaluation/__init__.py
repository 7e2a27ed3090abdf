"""Evaluation arithmetic on cached per-exit logits: exit policies, temperature scaling,
speedup (paper eq. 1), speed-accuracy curves, interpolation at fixed speedups and AUC.

Callbacks should need only `evaluate_logits`; the rest is exported for analysis and tests.
"""

from ..metrics import get_metric
from .collapse import collapsed_exits
from .curves import CurvePoint, SpeedAccuracyCurve, individual_exit_scores, speed_accuracy_curve
from .interpolation import auc, auc_coverage, default_speedup_points, interpolate_at
from .policies import POLICIES, ExitPolicy, get_policy, register_policy
from .simulation import ExitDecisions, simulate_exits
from .speedup import layers_run, speedup, speedup_from_counts
from .summary import evaluate_logits
from .temperature import apply_temperatures, bound_hits, fit_temperatures, softmax

__all__ = [
    "POLICIES",
    "CurvePoint",
    "ExitDecisions",
    "ExitPolicy",
    "SpeedAccuracyCurve",
    "apply_temperatures",
    "auc",
    "auc_coverage",
    "bound_hits",
    "collapsed_exits",
    "default_speedup_points",
    "evaluate_logits",
    "fit_temperatures",
    "get_metric",
    "get_policy",
    "individual_exit_scores",
    "interpolate_at",
    "layers_run",
    "register_policy",
    "simulate_exits",
    "softmax",
    "speed_accuracy_curve",
    "speedup",
    "speedup_from_counts",
]
