"""Golden numbers of four tiny training runs, pinned in `tests/golden/tiny_runs.json`.

`tests/test_golden.py` re-runs them and compares every per-exit score, temperature, curve point, AUC
and logged metric with the file. Regenerate it only when a change is *meant* to move a number (and
say so in the commit):

    OMP_NUM_THREADS=1 GLUE_DIR=/path/to/glue python tests/golden/make_golden.py

The runs fix `torch_threads=1`: on CPU the gradient sums depend on the thread count (README, "Same
seed, same numbers"), so the golden file holds for one machine type and thread count.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
GOLDEN_FILE = HERE / "tiny_runs.json"

# a fixed tiny run (sweep_utils.TINY: random 4-layer BERT, RTE, 32 training and 32 held-out examples),
# two epochs so that model selection and the reload of best.ckpt take part, and a sanity check
COMMON = [
    "trainer.max_epochs=2",
    "trainer.num_sanity_val_steps=1",
    "trainer.log_every_n_steps=1",
    "model.exit_pooling=mean",
    "seed=5",
    "lr=1e-3",
    "torch_threads=1",
]
RUNS = {
    "early_exit": ["method=early_exit"],
    "sweet": ["method=sweet"],
    "cascade": ["method=cascade"],
    "early_exit_learned": ["method=early_exit", "exit_policy=learned"],
}
# results.json fields that hold the evaluation's numbers (what the golden file pins)
PINNED = (
    "exit_layers",
    "num_layers",
    "primary_split",
    "temperatures",
    "metrics",
    "collapsed_exits",
    "selection",
    "evaluation",
)
# inside "evaluation": ratios of example counts, equal to the last bit or not at all
EXACT = {"score", "accuracy", "speedup", "exit_fractions", "num_examples"}
RTOL = 1e-6  # the rest is float64 arithmetic on float32 logits, or float32 logged values


def logged_metrics(run_dir: Path) -> dict[str, list[float]]:
    """Every column of the CSV logger's metrics.csv: its non-empty values, in row order."""
    with open(run_dir / "csv" / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    columns = sorted({key for row in rows for key in row})
    return {key: [float(row[key]) for row in rows if row.get(key) not in (None, "")] for key in columns}


def golden_numbers(run_dir: Path) -> dict:
    """What the golden file keeps of one finished run dir."""
    results = json.loads((run_dir / "results.json").read_text())
    return {"results": {key: results[key] for key in PINNED}, "logged": logged_metrics(run_dir)}


def run_all(root: Path) -> dict[str, dict]:
    sys.path[:0] = [str(TESTS.parent), str(TESTS)]  # this checkout's code; sweep_utils, conftest
    from sweep_utils import TINY, run_in_process

    numbers = {}
    for name, overrides in RUNS.items():
        run_dir = root / name
        run_in_process([*TINY, *COMMON, *overrides], run_dir)
        numbers[name] = golden_numbers(run_dir)
    return numbers


def differences(expected, actual, path: str = "", exact: bool = False) -> list[str]:
    """Where `actual` departs from `expected` (empty: the same numbers)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        if set(expected) != set(actual):
            return [f"{path}: keys {sorted(set(expected) ^ set(actual))} in only one of them"]
        found = []
        for key in expected:
            inner = exact or (key in EXACT and ".evaluation." in f".{path}.")
            found += differences(expected[key], actual[key], f"{path}.{key}".lstrip("."), inner)
        return found
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(expected)} entries expected, {len(actual)} found"]
        found = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            found += differences(e, a, f"{path}[{i}]", exact)
        return found
    numbers = (int, float)
    if isinstance(expected, numbers) and isinstance(actual, numbers) and not isinstance(expected, bool):
        same = expected == actual if exact else math.isclose(expected, actual, rel_tol=RTOL, abs_tol=1e-12)
        return [] if same else [f"{path}: {expected!r} expected, {actual!r} found"]
    return [] if expected == actual else [f"{path}: {expected!r} expected, {actual!r} found"]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        numbers = run_all(Path(tmp))
    GOLDEN_FILE.write_text(json.dumps(numbers, indent=1, sort_keys=True) + "\n")
    print(f"written: {GOLDEN_FILE} ({', '.join(numbers)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
