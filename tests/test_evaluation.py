"""Tests for sweet_lightning.evaluation: hand-computed examples first, then properties."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sweet_lightning.evaluation import (
    CurvePoint,
    SpeedAccuracyCurve,
    apply_temperatures,
    auc,
    auc_coverage,
    collapsed_exits,
    evaluate_logits,
    fit_temperatures,
    get_metric,
    get_policy,
    individual_exit_scores,
    interpolate_at,
    simulate_exits,
    softmax,
    softmax_row,
    speed_accuracy_curve,
    speedup,
    speedup_from_counts,
)

LAYERS = [1, 4, 6, 12]
FAST = settings(max_examples=40, deadline=None, derandomize=True)


def two_class_probs(max_probs: list[list[float]]) -> np.ndarray:
    """[E][N] probability of class 0 -> probs [E, N, 2]."""
    p = np.asarray(max_probs, dtype=np.float64)
    return np.stack([p, 1.0 - p], axis=2)


def make_curve(points: list[tuple[float, float]], layers: list[int] = LAYERS) -> SpeedAccuracyCurve:
    curve_points = tuple(CurvePoint(float(i), s, a, (1,)) for i, (s, a) in enumerate(points))
    return SpeedAccuracyCurve(curve_points, tuple(layers), 12, "early_exit", "accuracy", "confidence")


# ---------------------------------------------------------------- speedup (paper eq. 1)


def test_speedup_paper_example_is_exact() -> None:
    # paper Sec. 3.3: exits after layers [1, 4, 6, 12], stopping at the third classifier
    third = np.full(5, 2)
    assert speedup(third, LAYERS, 12, "early_exit") == 6 / 12
    assert speedup(third, LAYERS, 12, "cascade") == 11 / 12  # 1 + 4 + 6 layers run


def test_speedup_mixed_counts_by_hand() -> None:
    # S = [2, 1, 1, 0] over 4 examples
    # early exit: (2*1 + 1*4 + 1*6) / (12 * 4) = 12/48 = 0.25
    # cascade costs [1, 5, 11, 23]: (2*1 + 5 + 11) / 48 = 18/48 = 0.375
    assert speedup_from_counts([2, 1, 1, 0], LAYERS, 12, "early_exit") == 0.25
    assert speedup_from_counts([2, 1, 1, 0], LAYERS, 12, "cascade") == 0.375
    # a full cascade run exceeds 1 and is kept: 23/12
    assert speedup(np.array([3]), LAYERS, 12, "cascade") == 23 / 12


# ---------------------------------------------------------------- policies on hand-made inputs


def test_confidence_policy_by_hand() -> None:
    probs = two_class_probs([[0.9, 0.6, 0.55, 0.75], [0.95, 0.8, 0.6, 0.65], [0.5, 0.5, 0.5, 0.5]])
    policy = get_policy("confidence")
    # t=0.75: ex0 0.9 -> exit 0; ex1 0.6, 0.8 -> 1; ex2 never -> last; ex3 0.75 >= 0.75 (tie exits) -> 0
    assert policy.exit_indices(probs, 0.75).tolist() == [0, 1, 2, 0]
    # t=0.9: only ex0 (0.9, a tie) exits early
    assert policy.exit_indices(probs, 0.9).tolist() == [0, 2, 2, 2]
    assert policy.exit_indices(probs, 0.5).tolist() == [0, 0, 0, 0]  # t = 1/C
    assert policy.exit_indices(probs, 1.0).tolist() == [2, 2, 2, 2]


def test_confidence_one_never_exits_early_even_on_saturated_softmax() -> None:
    logits = np.array([[[800.0, 0.0]], [[0.0, 1.0]]])  # softmax of exit 0 is exactly [1, 0]
    assert softmax(logits)[0, 0, 0] == 1.0
    assert simulate_exits(logits, 1.0).exit_index.tolist() == [1]
    assert simulate_exits(logits, 0.999).exit_index.tolist() == [0]


def test_simulate_exits_predictions_come_from_the_exit_taken() -> None:
    logits = np.array([[[2.0, 0.0], [0.0, 0.1]], [[0.0, 3.0], [0.0, 3.0]]])
    decisions = simulate_exits(logits, 0.8)  # ex0 p=0.88 exits at 0; ex1 p=0.52 goes on
    assert decisions.exit_index.tolist() == [0, 1]
    assert decisions.predictions.tolist() == [0, 1]


def test_entropy_policy_by_hand() -> None:
    # entropies (nats): [.5,.5] ln2 = 0.693; [.9,.1] 0.325; [.99,.01] 0.056; [1, 0] 0
    probs = two_class_probs([[0.5, 0.99, 0.5, 1.0], [0.9, 0.5, 0.5, 1.0], [0.99, 0.5, 0.5, 1.0]])
    policy = get_policy("entropy")
    assert policy.exit_indices(probs, 0.33).tolist() == [1, 0, 2, 0]
    assert policy.exit_indices(probs, 0.1).tolist() == [2, 0, 2, 0]
    assert policy.exit_indices(probs, 0.0).tolist() == [2, 2, 2, 2]  # t=0: never exit early
    assert policy.exit_indices(probs, math.log(2)).tolist() == [0, 0, 0, 0]


def test_patience_policy_by_hand() -> None:
    # argmax per exit: ex0 1,1,1,1   ex1 0,1,1,0   ex2 0,1,0,1
    argmax = np.array([[1, 0, 0], [1, 1, 1], [1, 1, 0], [1, 0, 1]])
    probs = np.where(np.eye(2, dtype=bool)[argmax], 0.8, 0.2)
    policy = get_policy("patience")
    assert policy.exit_indices(probs, 1).tolist() == [0, 0, 0]
    assert policy.exit_indices(probs, 2).tolist() == [1, 2, 3]  # ex2 never agrees: last exit
    assert policy.exit_indices(probs, 3).tolist() == [2, 3, 3]
    assert policy.exit_indices(probs, 4).tolist() == [3, 3, 3]


def test_learned_policy_by_hand() -> None:
    scores = np.array([[0.9, 0.2, 0.2], [0.1, 0.7, 0.3], [1.0, 1.0, 1.0]])
    probs = np.full((3, 3, 2), 0.5)
    policy = get_policy("learned")
    assert policy.exit_indices(probs, 0.5, scores).tolist() == [0, 1, 2]
    assert policy.exit_indices(probs, 0.0, scores).tolist() == [0, 0, 0]
    assert policy.exit_indices(probs, 1.0, np.ones((3, 3))).tolist() == [2, 2, 2]


@pytest.mark.parametrize("classes", [2, 3, 5])
@pytest.mark.parametrize("name", ["confidence", "entropy", "learned"])
def test_one_example_rule_is_the_array_rule(name: str, classes: int) -> None:
    """A per-exit policy's `should_exit` (one example's Python floats, the engine's batch-1 path)
    decides as its `may_exit` (arrays, the simulation) bit for bit: thresholds equal to examples' own
    statistics (inclusive ties), the range ends and beyond. With two classes (where the engine uses
    it) `softmax_row` equals `softmax` after temperature to the bit."""
    policy = get_policy(name)
    rng = np.random.default_rng(classes)
    logits = (rng.normal(size=(3, 200, classes)) * rng.uniform(0.1, 8, size=(3, 1, 1))).astype(np.float32)
    temps = np.array([0.7, 1.0, 1.3])
    probs = softmax(apply_temperatures(logits, temps))
    rows = probs.tolist()
    if classes == 2:
        one_row = [[softmax_row(logits[e, n].tolist(), temps[e]) for n in range(200)] for e in range(3)]
        np.testing.assert_array_equal(np.array(one_row), probs)
    scores = rng.uniform(size=(3, 200))
    stats = policy.statistic(probs, scores).ravel()
    ends = [0.0, 1 / classes, 0.5, 1.0, math.log(classes), 2.0]
    for t in [*stats[::7], *ends]:
        if name != "entropy" and t > 1:
            continue
        mask = policy.may_exit(probs, t, scores)
        one = [[policy.should_exit(rows[e][n], t, scores[e, n]) for n in range(200)] for e in range(3)]
        np.testing.assert_array_equal(np.array(one), mask, err_msg=f"t={t}")


def test_only_last_exit_answers_matches_the_rule() -> None:
    """Where a policy says no exit before the last can answer (the engine then skips their heads),
    its mask lets no example out early, whatever the inputs; just inside the range some leave."""
    rng = np.random.default_rng(0)
    probs = softmax(rng.normal(size=(4, 300, 2)) * 6)
    scores = rng.uniform(size=(4, 300))
    for name, never, inside in [
        ("confidence", 1.0, 0.99),
        ("learned", 1.0, 0.99),
        ("entropy", 0.0, 0.01),
        ("patience", 4.0, 3.0),
    ]:
        policy = get_policy(name)
        assert policy.only_last_exit_answers(never, 4) and not policy.only_last_exit_answers(inside, 4)
        assert not policy.may_exit(probs, never, scores)[:-1].any()
        assert policy.may_exit(probs, inside, scores)[:-1].any()


# ---------------------------------------------------------------- interpolation and AUC


def test_interpolate_at_by_hand() -> None:
    curve = make_curve([(0.1, 0.6), (0.5, 0.8), (1.0, 0.9)])
    # 0.25: 0.6 + (0.25 - 0.1) / (0.5 - 0.1) * (0.8 - 0.6) = 0.6 + 0.375 * 0.2 = 0.675
    # 0.75: 0.8 + (0.75 - 0.5) / (1.0 - 0.5) * (0.9 - 0.8) = 0.85
    # 0.05 lies below the curve's span -> NaN (no extrapolation)
    values = interpolate_at(curve, [0.05, 0.1, 0.25, 0.75, 1.0])
    assert np.isnan(values[0])
    assert values[1:] == pytest.approx([0.6, 0.675, 0.85, 0.9])


def test_interpolate_keeps_best_score_at_repeated_speedup() -> None:
    curve = make_curve([(0.1, 0.6), (0.5, 0.7), (0.5, 0.8), (1.0, 0.9)])
    assert interpolate_at(curve, [0.5])[0] == pytest.approx(0.8)


def test_default_speedup_points_reach_both_ends() -> None:
    logits = np.random.default_rng(0).normal(size=(4, 30, 2))
    labels = np.arange(30) % 2
    curve = speed_accuracy_curve(logits, labels, LAYERS, 12)
    values = interpolate_at(curve)  # (1/12, 1/4, 1/2, 3/4, 1)
    assert not np.any(np.isnan(values))
    assert values[0] == individual_exit_scores(logits, labels)[0]
    assert values[-1] == individual_exit_scores(logits, labels)[-1]


def test_auc_by_hand() -> None:
    curve = make_curve([(0.1, 0.6), (0.5, 0.8), (1.0, 0.9)])
    # over [0.1, 1]: (0.5-0.1)*(0.6+0.8)/2 + (1.0-0.5)*(0.8+0.9)/2 = 0.28 + 0.425 = 0.705; / 0.9
    assert auc(curve, 0.1, 1.0) == pytest.approx(0.705 / 0.9)
    # over [0, 1]: flat clamp adds 0.1 * 0.6 = 0.06 -> 0.765 / 1.0; the curve covers 90 %
    assert auc(curve, 0.0, 1.0) == pytest.approx(0.765)
    assert auc_coverage(curve, 0.0, 1.0) == pytest.approx(0.9)


def test_auc_flat_curve_is_its_score_and_default_interval() -> None:
    curve = make_curve([(1 / 12, 0.8), (0.4, 0.8), (1.0, 0.8)])
    assert auc(curve) == pytest.approx(0.8)  # default [1/12, 1]
    assert auc_coverage(curve) == 1.0


def test_auc_ignores_cascade_points_above_hi() -> None:
    with_overhead = make_curve([(0.1, 0.6), (0.5, 0.8), (1.0, 0.9), (1.9, 0.2)])
    assert auc(with_overhead, 0.1, 1.0) == pytest.approx(0.705 / 0.9)
    assert len(with_overhead.points) == 4


# ---------------------------------------------------------------- metrics and collapse


def test_mcc_and_f1_by_hand() -> None:
    predictions, labels = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 0, 1])
    # TP=2 FP=1 TN=2 FN=0: MCC = (2*2 - 1*0) / sqrt(3 * 2 * 3 * 2) = 4/6; F1 = 2*2 / (2*2 + 1 + 0)
    assert get_metric("mcc")(predictions, labels) == pytest.approx(2 / 3)
    assert get_metric("f1")(predictions, labels) == pytest.approx(0.8)
    assert get_metric("accuracy")(predictions, labels) == pytest.approx(0.8)


def test_undefined_metrics_are_zero() -> None:
    assert get_metric("mcc")(np.zeros(4, int), np.array([0, 1, 0, 1])) == 0.0
    assert get_metric("f1")(np.zeros(4, int), np.zeros(4, int)) == 0.0


def test_collapse_detection() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    constant = np.tile([3.0, 0.0, 0.0], (6, 1))  # always class 0
    perfect = np.eye(3)[labels] * 5.0
    at_baseline = np.eye(3)[[1, 0, 0, 1, 2, 1]] * 5.0  # 3 correct = majority count, not constant
    flags = collapsed_exits(np.stack([constant, perfect, at_baseline]), labels)
    assert flags.tolist() == [True, False, True]


# ---------------------------------------------------------------- temperature scaling


def test_fit_recovers_known_temperatures() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(scale=2.0, size=(20000, 3))
    # labels drawn from softmax(base): exit e with logits T_e * base is calibrated at T = T_e
    labels = (softmax(base).cumsum(axis=1) < rng.random(20000)[:, None]).sum(axis=1).clip(max=2)
    true_temps = np.array([0.5, 1.0, 3.0])
    fitted = fit_temperatures(true_temps[:, None, None] * base[None], labels)
    assert fitted == pytest.approx(true_temps, rel=0.05)


def test_fit_is_deterministic_and_flat_nll_keeps_scale() -> None:
    logits = np.random.default_rng(1).normal(size=(2, 50, 3))
    labels = np.arange(50) % 3
    assert np.array_equal(fit_temperatures(logits, labels), fit_temperatures(logits, labels))
    assert fit_temperatures(np.zeros((1, 5, 2)), np.array([0, 1, 0, 1, 1])).tolist() == [1.0]


def test_fitted_temperature_at_its_search_bound_is_flagged_and_warned() -> None:
    """Exit 1 separates the calibration labels (T runs to T_MIN: always fires), exit 3 is confidently
    wrong (T runs to T_MAX: never fires), exit 2 is an honest noisy classifier (an interior T)."""
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 200)
    sign = 2 * np.eye(2)[labels] - 1  # +1 on the true class, -1 on the other
    noisy = rng.normal(size=(200, 2)) + sign
    logits = np.stack([3.0 * sign, noisy, -3.0 * sign])
    with pytest.warns(UserWarning) as caught:
        report = evaluate_logits(
            logits, labels, [2, 4, 6], 6, calibration_logits=logits, calibration_labels=labels
        )
    assert [e["temperature_at_bound"] for e in report["exits"]] == ["lower", None, "upper"]
    messages = [str(w.message) for w in caught if "search bound" in str(w.message)]
    assert len(messages) == 2
    assert messages[0].startswith("exit 1 (layer 2)") and "T_MIN" in messages[0]
    assert messages[1].startswith("exit 3 (layer 6)") and "T_MAX" in messages[1]
    json.dumps(report, allow_nan=False)  # the flag reaches results.json with the rest of the record
    # the flags say what the exits do: at any confidence threshold below 1 exit 1 takes everything
    exits = simulate_exits(logits, 0.99, temperatures=np.asarray(report["temperatures"])).exit_index
    assert (exits == 0).all()
    # given temperatures are flagged the same way but not warned about (the fit already was)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = evaluate_logits(logits, labels, [2, 4, 6], 6, temperatures=report["temperatures"])
    assert [e["temperature_at_bound"] for e in again["exits"]] == ["lower", None, "upper"]


logit_grid = arrays(np.float64, (3, 6, 3), elements=st.integers(-40, 40).map(lambda k: k / 4))


@FAST
@given(logits=logit_grid, temps=arrays(np.float64, 3, elements=st.floats(0.1, 10.0)))
def test_temperatures_never_change_argmax(logits: np.ndarray, temps: np.ndarray) -> None:
    scaled = apply_temperatures(logits, temps)
    assert np.array_equal(scaled.argmax(axis=2), logits.argmax(axis=2))


# ---------------------------------------------------------------- properties of the curve

any_logits = st.tuples(st.integers(1, 4), st.integers(1, 8), st.integers(2, 4)).flatmap(
    lambda shape: arrays(np.float64, shape, elements=st.floats(-30, 30))
)


@st.composite
def logits_and_layers(draw: st.DrawFn) -> tuple[np.ndarray, list[int]]:
    logits = draw(any_logits)
    layers = sorted(draw(st.sets(st.integers(1, 12), min_size=logits.shape[0], max_size=logits.shape[0])))
    return logits, layers


@FAST
@given(
    data=logits_and_layers(),
    t=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2),
    temps=st.floats(0.2, 5.0),
)
def test_speedup_monotone_in_confidence_threshold(
    data: tuple[np.ndarray, list[int]], t: list[float], temps: float
) -> None:
    logits, layers = data
    low, high = sorted(t)
    temperatures = np.full(logits.shape[0], temps)
    fast = simulate_exits(logits, low, temperatures=temperatures).exit_index
    slow = simulate_exits(logits, high, temperatures=temperatures).exit_index
    assert np.all(fast <= slow)
    for cost_model in ("early_exit", "cascade"):
        assert speedup(fast, layers, 12, cost_model) <= speedup(slow, layers, 12, cost_model)


@FAST
@given(logits=any_logits)
def test_confidence_range_ends(logits: np.ndarray) -> None:
    num_exits, _, num_classes = logits.shape
    assert np.all(simulate_exits(logits, 1.0 / num_classes).exit_index == 0)
    assert np.all(simulate_exits(logits, 1.0).exit_index == num_exits - 1)


@FAST
@given(logits=any_logits, t=st.floats(0.0, 1.0))
def test_confidence_matches_a_per_example_loop(logits: np.ndarray, t: float) -> None:
    probs = softmax(logits)
    expected = []
    for n in range(logits.shape[1]):
        taken = logits.shape[0] - 1
        for i in range(logits.shape[0] - 1):
            if t < 1.0 and (t <= 1.0 / logits.shape[2] or probs[i, n].max() >= t):
                taken = i
                break
        expected.append(taken)
    assert simulate_exits(logits, t).exit_index.tolist() == expected


# ---------------------------------------------------------------- the entry function


def test_evaluate_logits_is_json_and_complete() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 60)
    logits = rng.normal(size=(4, 60, 2)) + np.linspace(0.5, 3, 4)[:, None, None] * (2 * np.eye(2)[labels] - 1)
    report = evaluate_logits(
        logits, labels, LAYERS, 12, metric="mcc", extra_metrics=["accuracy", "f1"],
        calibration_logits=logits, calibration_labels=labels,
    )  # fmt: skip
    json.dumps(report, allow_nan=False)
    assert report["policy"] == "confidence" and report["temperature_source"] == "fitted"
    assert [e["layer"] for e in report["exits"]] == LAYERS
    assert set(report["exits"][0]) == {
        "exit",
        "layer",
        "score",
        "accuracy",
        "f1",
        "collapsed",
        "temperature_at_bound",
    }
    assert len(report["curve"]) == 11
    speedups = [p["speedup"] for p in report["curve"]]
    assert speedups == sorted(speedups) and speedups[0] == 1 / 12 and speedups[-1] == 1.0
    assert all(sum(p["exit_fractions"]) == pytest.approx(1.0) for p in report["curve"])
    assert report["auc_interval"] == [1 / 12, 1.0]
    assert list(report["at_speedup"]) == ["0.0833", "0.2500", "0.5000", "0.7500", "1.0000"]
    assert report["at_speedup"]["1.0000"] == report["exits"][-1]["score"]


def test_evaluate_logits_unreachable_speedup_is_null() -> None:
    logits = np.random.default_rng(3).normal(size=(2, 20, 2))
    report = evaluate_logits(logits, np.arange(20) % 2, [3, 6], 12, policy="patience")
    assert report["at_speedup"]["0.0833"] is None  # fastest possible is 3/12
    assert report["temperatures"] == [1.0, 1.0]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: get_policy("greedy"), "unknown exit policy"),
        (lambda: simulate_exits(np.zeros((2, 3, 2)), 1.5), r"\[0, 1\]"),
        (lambda: simulate_exits(np.zeros((2, 3, 2)), -0.1, policy="learned"), r"\[0, 1\]"),
        (lambda: simulate_exits(np.zeros((2, 3, 2)), -0.1, policy="entropy"), ">= 0"),
        (lambda: simulate_exits(np.zeros((2, 3, 2)), 0, policy="patience"), "integer >= 1"),
        (lambda: simulate_exits(np.zeros((2, 3, 2)), 1.5, policy="patience"), "integer >= 1"),
        (lambda: simulate_exits(np.zeros((2, 3, 2)), 0.5, policy="learned"), "needs exit_scores"),
        (lambda: speed_accuracy_curve(np.zeros((2, 3, 2)), np.zeros(4, int), [6, 12], 12), "labels"),
        (lambda: speed_accuracy_curve(np.zeros((2, 3, 2)), np.zeros(3, int), LAYERS, 12), "2 exits"),
        (lambda: speed_accuracy_curve(np.zeros((2, 3, 2)), np.zeros(3, int), [6, 6], 12), "increasing"),
        (lambda: speed_accuracy_curve(np.zeros((2, 3, 2)), np.zeros(3, int), [6, 24], 12), "num_layers"),
        (
            lambda: speed_accuracy_curve(np.zeros((2, 3, 2)), np.zeros(3, int), [6, 12], 12, "mm"),
            "cost_model",
        ),
        (lambda: get_metric("bleu"), "unknown metric"),
        (lambda: apply_temperatures(np.zeros((2, 3, 2)), [1.0, 0.0]), "> 0"),
    ],
)
def test_bad_input_raises_one_line_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert "\n" not in str(error.value)
