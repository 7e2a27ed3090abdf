"""A real sweep through sbatch (launcher=slurm): start a local cluster with
`bash scripts/slurm_local.sh start`, then `python -m pytest -m slurm`."""

import shutil
import subprocess

import pytest
from sweep_utils import TINY, job_dirs, launch, results

pytestmark = pytest.mark.slurm


def cluster_answers() -> bool:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        states = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(s.strip().rstrip("*") in ("idle", "mixed", "allocated") for s in states.splitlines())


@pytest.fixture
def slurm_cluster():
    if not cluster_answers():
        pytest.skip("no Slurm cluster answers (bash scripts/slurm_local.sh start)")


def test_sweep_runs_as_a_slurm_array_job(slurm_cluster, glue_path, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "launcher=slurm", *TINY, "callbacks=none", "seed=1,2", "hydra.launcher.cpus_per_task=1"]
    proc = launch([*args, f"hydra.sweep.dir={sweep}"], tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [results(j)["status"] for j in job_dirs(sweep)] == ["completed", "completed"]
    assert sorted(results(j)["seed"] for j in job_dirs(sweep)) == [1, 2]
    # one array job for the sweep, and the jobs ran under Slurm (not in this process)
    (script,) = sweep.glob(".submitit/*/*_submission.sh")
    assert "#SBATCH --array=0-1" in script.read_text()
    logs = "".join(p.read_text() for p in sweep.glob(".submitit/*_*/*_log.out"))
    assert logs.count("results:") == 2
