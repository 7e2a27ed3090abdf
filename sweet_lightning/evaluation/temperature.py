"""Temperature scaling (Guo et al., 2017), one temperature per exit (paper App. A).

Each exit's T minimises the NLL of softmax(logits / T) on a calibration set. The NLL is
convex in 1/T, hence unimodal in log T, so a golden-section search over log T finds the
global minimum deterministically without gradients or a torch dependency. A fit that ends at
a bound of the search range wanted a T beyond it (`bound_hits`; `_AT_BOUND` says what that does
to the exit). Scaling by T > 0 keeps the ranking of classes; predictions are nevertheless always
taken from the raw logits (see policies.py) so that float rounding can never turn a near-tie into
a different argmax.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from .checks import check_labels, check_logits

T_MIN, T_MAX = 1e-3, 1e3  # search bounds; a fitted T at a bound means the exit is (near) separable
_GOLDEN_STEPS = 100  # shrinks the log-T bracket by 0.618**100, far below float precision


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, stabilised by subtracting the max."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def tempered_softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) in float64 of one exit's logits [..., C] of any float dtype: to the bit
    what `softmax(apply_temperatures(...))` gives that exit (NumPy casts before it divides; x / 1.0
    is x), without its checks (the inference engine's batched path: a NaN stays a NaN)."""
    if temperature == 1.0:
        return softmax(np.asarray(logits, dtype=np.float64))
    return softmax(np.divide(logits, temperature, dtype=np.float64))


def softmax_row(logits: Sequence[float], temperature: float = 1.0) -> list[float]:
    """`softmax(apply_temperatures(...))` of one example's logits at one exit, on Python floats (the
    inference engine's batch-1 path). The same IEEE operations in the same order: x / T (skipped at
    T = 1, where it is exact), x - max, NumPy's exp (one call), the sum, e / sum; for two classes
    the sum has a single rounding, so the bits equal the array version."""
    scaled = logits if temperature == 1.0 else [x / temperature for x in logits]
    peak = max(scaled)
    exps = np.exp([x - peak for x in scaled]).tolist()
    total = sum(exps)
    return [e / total for e in exps]


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    scaled = logits / temperature
    peak = scaled.max(axis=1)
    log_norm = peak + np.log(np.exp(scaled - peak[:, None]).sum(axis=1))
    return float(np.mean(log_norm - scaled[np.arange(labels.size), labels]))


def _fit_one(logits: np.ndarray, labels: np.ndarray) -> float:
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    f_a, f_b = _nll(logits, labels, math.exp(a)), _nll(logits, labels, math.exp(b))
    for _ in range(_GOLDEN_STEPS):
        if f_a <= f_b:
            hi, b, f_b = b, a, f_a
            a = hi - ratio * (hi - lo)
            f_a = _nll(logits, labels, math.exp(a))
        else:
            lo, a, f_a = a, b, f_b
            b = lo + ratio * (hi - lo)
            f_b = _nll(logits, labels, math.exp(b))
    best = math.exp((lo + hi) / 2)
    # a flat NLL (e.g. all-zero logits) has no preferred T: keep the model's own scale
    return best if _nll(logits, labels, best) < _nll(logits, labels, 1.0) else 1.0


def fit_temperatures(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Fit one temperature per exit on calibration logits [E, N, C] and labels [N]; returns [E]."""
    logits = check_logits(logits)
    labels = check_labels(labels, logits)
    return np.array([_fit_one(exit_logits, labels) for exit_logits in logits])


def bound_hits(temperatures) -> list[str | None]:
    """Per exit: "lower" / "upper" when its temperature sits at T_MIN / T_MAX, else None.

    The search converges to within ~1e-20 (in log T) of a bound it is pushed against, so a
    relative tolerance of 1e-6 separates "at the bound" from any interior optimum."""
    with np.errstate(divide="ignore", invalid="ignore"):  # bad values: checked by the callers
        log_t = np.log(np.asarray(temperatures, dtype=np.float64))
    lower = np.abs(log_t - math.log(T_MIN)) < 1e-6
    upper = np.abs(log_t - math.log(T_MAX)) < 1e-6
    return ["lower" if low else "upper" if up else None for low, up in zip(lower, upper, strict=True)]


def apply_temperatures(logits: np.ndarray, temperatures: np.ndarray) -> np.ndarray:
    """Divide each exit's logits [E, N, C] by its temperature [E]."""
    logits = check_logits(logits)
    temps = np.asarray(temperatures, dtype=np.float64)
    if temps.shape != (logits.shape[0],):
        raise ValueError(f"temperatures must have shape ({logits.shape[0]},), got {temps.shape}")
    if not np.all(np.isfinite(temps) & (temps > 0)):
        raise ValueError(f"temperatures must be finite and > 0, got {temps.tolist()}")
    return logits / temps[:, None, None]


# what a temperature at each bound does to its exit, for the warning
_AT_BOUND = {
    "lower": f"T_MIN={T_MIN:g} (its logits separate the calibration split), so its tempered confidence is ~1 "
    "and it answers every example at any confidence threshold below 1",
    "upper": f"T_MAX={T_MAX:g} (its logits do worse than uniform on the calibration split), so its "
    "tempered probabilities are ~uniform and it answers no example at any confidence threshold above "
    "1/#classes",
}


def warn_bound_hits(at_bound: Sequence[str | None], layers: Sequence[int]) -> None:
    """One warning per exit whose fitted temperature sits at a search bound (what it means for exits)."""
    for i, (side, layer) in enumerate(zip(at_bound, layers, strict=True), start=1):
        if side is not None:
            warnings.warn(
                f"exit {i} (layer {layer}): fitted temperature at the search bound {_AT_BOUND[side]}",
                stacklevel=3,
            )
