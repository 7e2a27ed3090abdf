"""Evaluation arithmetic on cached per-exit logits, one concept a module:

- `checks`: what valid logits, labels, exit layers and exit scores are;
- `temperature`: softmax and temperature scaling (paper App. A);
- `policies`: exit policies and replaying them on logits (which exit answers each example);
- `curves`: the cost model, speedup (eq. 1), speed-accuracy curves, interpolation and AUC;
- `summary`: `evaluate_logits`, one split's JSON-ready evaluation (each exit alone, the curve);
- `callback`: the Lightning callback that evaluates a run (import it from there: it needs Lightning).

The names imported below are the package's public interface.
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
