"""The committed reports are regenerated from their committed runs and must come out identical: a
table can never drift from its data.
- docs/reproduction/: the paper's three methods over results/cpu_repro/ (issue 12), and
  docs/reproduction/mnli_mismatched/: MNLI's runs read on dev_mismatched (`--split`), and
  docs/reproduction/lr_probe/: the seven tasks with the 1e-4 probe;
- docs/strategies/: every training strategy on the tasks of docs/strategies.md (issue 16); its runs
  share the sweep folder, hence the reproduction's --methods filter."""

import shlex
import subprocess
import sys

import pytest
from conftest import REPO


def doc_report_command(doc: str, out: str) -> tuple[list[str], list[str]]:
    """The sweeps and options of the report command a doc writes (continued lines joined), so the
    doc is the one place that lists them: adding a task there is all the test needs."""
    text = (REPO / doc).read_text().replace("\\\n", " ")
    commands = [
        shlex.split(x)[3:] for x in text.splitlines() if x.startswith("python -m sweet_lightning.report ")
    ]
    words = next((c for c in commands if c[-2:] == ["--out", out]), None)
    assert words, f"{doc}: no report command ends with --out {out}"
    first_option = next(i for i, w in enumerate(words) if w.startswith("--"))
    return words[:first_option], words[first_option:-2]


REPORTS = {
    # the complete tasks only, as docs/reproduction.md's command lists them: a task still missing
    # seeds would shrink the average over tasks to the seeds every task has
    "reproduction": doc_report_command("docs/reproduction.md", "docs/reproduction/"),
    "reproduction/mnli_mismatched": doc_report_command(
        "docs/reproduction.md", "docs/reproduction/mnli_mismatched/"
    ),
    "reproduction/lr_probe": doc_report_command("docs/reproduction.md", "docs/reproduction/lr_probe/"),
    "strategies": (
        ["results/cpu_repro/sst2", "results/cpu_repro/mrpc"],
        ["--title", "Early-exit training strategies"],
    ),
}
TABLES = (
    "report.md",
    "runs.csv",
    "chosen_lr.csv",
    "lr_search.csv",
    "table1_exits.csv",
    "curve_points.csv",
    "auc.csv",
    "curve_grid.csv",
)


@pytest.mark.parametrize("name", REPORTS)
def test_committed_report_tables_are_regenerated_identically(name, tmp_path):
    sweeps, options = REPORTS[name]
    committed = REPO / "docs" / name
    if not committed.is_dir() or not all((REPO / s).is_dir() for s in sweeps):
        pytest.skip(f"docs/{name}/ or its runs are not committed")
    # the same command as the doc's, from the repository root (report.md names its sources)
    command = ["-m", "sweet_lightning.report", *sweeps, *options, "--out"]
    done = subprocess.run(
        [sys.executable, *command, str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for table in TABLES:
        fresh, kept = (tmp_path / table).read_text(), (committed / table).read_text()
        assert fresh == kept, (
            f"docs/{name}/{table} differs from what its runs give: regenerate it with "
            f"python {' '.join(map(shlex.quote, command))} docs/{name}/"
        )
