"""Check that two runs of one command gave the same numbers, bit for bit.

    python -m sweet_lightning.reproduce RUN_DIR_A RUN_DIR_B

Compares every `logits_*.npz` array byte for byte and `results.json`, read as a run record (so a run
of older code, whose record said `kind` for `cost_model`, compares with a new one), with what differs
between two launches by design left out: the run directory in paths, `train_time_s`, the schema
version, and config keys only one run has (a constructor node added to conf/ after the older run).
Exit status 0: identical; 1: the differences are listed; 2: bad input.

Bit-identical numbers need the same code, data, device and torch thread count: on CPU the gradient
reductions depend on the number of threads (results.json records it under `environment`; the
`torch_threads` config key fixes it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sweet_lightning import cli
from sweet_lightning.run_record import RESULTS_FILE, RunRecord, flatten, logits_file

VARYING = ("train_time_s", "schema_version")


def normalised(value, run_dir: str):
    """results.json without the run dir in its strings and without the measured times."""
    if isinstance(value, dict):
        return {k: normalised(v, run_dir) for k, v in value.items() if k not in VARYING}
    if isinstance(value, list):
        return [normalised(v, run_dir) for v in value]
    if isinstance(value, str):
        return value.replace(run_dir, "<run_dir>")
    return value


def differences(a: Path, b: Path) -> list[str]:
    """What differs between two run dirs (empty: the same numbers)."""
    for run in (a, b):
        if not (run / RESULTS_FILE).exists():
            raise FileNotFoundError(
                f"{run / RESULTS_FILE} not found: give two run directories written by launch.py."
            )
    found = []
    names = [sorted(p.name for p in run.glob(logits_file("*"))) for run in (a, b)]
    if names[0] != names[1]:
        found.append(f"logits files: {names[0]} vs {names[1]}")
    for name in sorted(set(names[0]) & set(names[1])):
        with np.load(a / name) as x, np.load(b / name) as y:
            for key in sorted(set(x.files) | set(y.files)):
                if key not in x.files or key not in y.files:
                    found.append(f"{name}: {key} only in one run")
                elif x[key].dtype != y[key].dtype or x[key].shape != y[key].shape:
                    found.append(
                        f"{name}: {key} {x[key].dtype}{x[key].shape} vs {y[key].dtype}{y[key].shape}"
                    )
                elif x[key].tobytes() != y[key].tobytes():
                    diff = np.abs(x[key].astype(np.float64) - y[key].astype(np.float64)).max()
                    found.append(f"{name}: {key} differs (max abs difference {diff:.3g})")
    results = [flatten(normalised(RunRecord.load(run).to_dict(), str(run))) for run in (a, b)]
    for key in sorted(set(results[0]) | set(results[1])):
        if key.startswith("config.") and not (key in results[0] and key in results[1]):
            continue  # a config key the older code did not write: what it passes on is compared
        if results[0].get(key) != results[1].get(key):
            found.append(f"results.json {key}: {results[0].get(key)!r} vs {results[1].get(key)!r}")
    return found


def build_parser() -> cli.Parser:
    p = cli.parser("python -m sweet_lightning.reproduce", __doc__)
    cli.add_run_dirs(p, "run_dir_a", help="the first run directory")
    cli.add_run_dirs(p, "run_dir_b", help="the second run directory, from the same command")
    return p


def compare(args: argparse.Namespace) -> int:
    found = differences(args.run_dir_a, args.run_dir_b)
    if not found:
        print("identical: every logits array bit for bit, and results.json (times and run dir aside)")
        return 0
    print(f"{len(found)} difference(s):")
    for line in found[:50]:
        print(f"  {line}")
    return 1


def main(argv: list[str] | None = None) -> int:
    return cli.run_command(build_parser(), compare, argv, errors=(FileNotFoundError,))


if __name__ == "__main__":
    sys.exit(main())
