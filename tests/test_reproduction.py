"""The committed reproduction (docs/reproduction/) is regenerated from its committed runs
(results/cpu_repro/) and must come out identical: a table can never drift from its data."""

import subprocess
import sys

import pytest
from conftest import REPO

RUNS = "results/cpu_repro"
# the paper's three methods: issue 16's strategy runs share the sweep folder (docs/strategies/)
METHODS = ("early_exit", "sweet", "cascade")
COMMAND = f"python -m sweet_lightning.report {RUNS} --methods {' '.join(METHODS)} --out docs/reproduction/"
COMMITTED = REPO / "docs" / "reproduction"
TABLES = ("report.md", "runs.csv", "chosen_lr.csv", "lr_search.csv", "table1_exits.csv", "curve_points.csv",
          "auc.csv", "curve_grid.csv")


@pytest.mark.skipif(not (REPO / RUNS).is_dir(), reason="no committed reproduction runs")
def test_committed_reproduction_tables_are_regenerated_identically(tmp_path):
    # the same command as docs/reproduction.md, from the repository root (report.md names its sources)
    done = subprocess.run(
        [sys.executable, "-m", "sweet_lightning.report", RUNS, "--methods", *METHODS, "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for name in TABLES:
        fresh, committed = (tmp_path / name).read_text(), (COMMITTED / name).read_text()
        assert fresh == committed, (
            f"docs/reproduction/{name} differs from what its runs give: regenerate it with {COMMAND}"
        )
