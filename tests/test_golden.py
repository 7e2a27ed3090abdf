"""Golden numbers: four tiny training runs give the per-exit scores, temperatures, curves, AUCs and
logged metrics pinned in tests/golden/tiny_runs.json (written from the code before the issue-14
redesign). A refactor must not move them; to regenerate the file when a number is meant to change,
see tests/golden/make_golden.py."""

import json

import pytest
from golden.make_golden import GOLDEN_FILE, RUNS, differences, run_all


def test_tiny_runs_give_the_golden_numbers(glue_path, tmp_path):
    golden = json.loads(GOLDEN_FILE.read_text())
    assert sorted(golden) == sorted(RUNS)
    numbers = json.loads(json.dumps(run_all(tmp_path)))  # as the file stores them (tuples as lists)
    found = [f"{name}: {line}" for name in RUNS for line in differences(golden[name], numbers[name])]
    assert not found, "\n".join(found[:40])


@pytest.mark.parametrize(
    ("expected", "actual", "message"),
    [
        ({"evaluation": {"dev": {"score": 0.5}}}, {"evaluation": {"dev": {"score": 0.5 + 1e-12}}}, "score"),
        ({"temperatures": [1.0]}, {"temperatures": [1.00001]}, "temperatures[0]"),
        ({"logged": {"val/auc": [0.5]}}, {"logged": {"val/score": [0.5]}}, "in only one"),
    ],
)
def test_the_comparison_sees_a_moved_number(expected, actual, message):
    found = differences(expected, actual)
    assert len(found) == 1 and message in found[0]
    assert differences(expected, expected) == []
