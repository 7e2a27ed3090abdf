"""scripts/gpu_check.py runs its whole chain on the CPU too (a hidden --device cpu: trainer=cpu in
bf16-mixed), so the checks it makes on a GPU cannot rot between the sessions that have one."""

import json
import subprocess
import sys

from tests.conftest import REPO


def test_gpu_check_runs_end_to_end_on_the_cpu_and_reuses_completed_runs(glue_path, tmp_path):
    cmd = [
        sys.executable, "scripts/gpu_check.py", "--out", str(tmp_path), "--device", "cpu",
        "--task", "mrpc", "--methods", "early_exit", "--train-size", "200", "--overrides", "torch_threads=1",
    ]  # fmt: skip
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    (row,) = json.loads((tmp_path / "summary.json").read_text())
    assert row["checks"] and all(row["checks"].values()), row["checks"]
    assert row["device"] == "cpu" and row["precision"] == "bf16-mixed"
    assert row["rows"] == 408  # MRPC's dev pairs, read from the TSV as the engine's inputs
    assert sum(n > 0 for n in row["exit_fractions_bf16"]) >= 2  # the threshold splits the rows
    record = json.loads((tmp_path / "early_exit" / "results.json").read_text())

    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "early_exit: reusing the completed run" in again.stdout
    assert json.loads((tmp_path / "early_exit" / "results.json").read_text()) == record  # not retrained
