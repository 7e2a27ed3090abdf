"""A real sweep through sbatch (launcher=slurm): start a local cluster with
`bash scripts/slurm_local.sh start`, then `python -m pytest -m slurm`."""

import os
import shutil
import subprocess
import sys
import time

import pytest
from conftest import REPO
from sweep_utils import TINY, job_dirs, launch, results, tree_digest

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
    """Two jobs through sbatch; the second crashes mid-training, the first still completes."""
    sweep = tmp_path / "sweep"
    crash = ["+callbacks.crash._target_=tests.helpers.CrashAtStep", "+callbacks.crash.step=1000,1"]
    args = ["-m", "launcher=slurm", *TINY, "callbacks=none", *crash, "hydra.launcher.cpus_per_task=1"]
    proc = launch([*args, f"hydra.sweep.dir={sweep}"], tmp_path, timeout=300)
    # the sweep went on past the crash, and the command says so (summary, exit status 1)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "this launch: 1 completed, 1 failed" in proc.stdout + proc.stderr
    first, second = (results(j) for j in job_dirs(sweep))
    assert first["status"] == "completed"
    assert second["status"] == "failed" and "simulated crash at step 1" in second["error"]
    # one array job for the sweep, and the jobs ran under Slurm (not in this process)
    (script,) = sweep.glob(".submitit/*/*_submission.sh")
    assert "#SBATCH --array=0-1" in script.read_text()
    logs = "".join(p.read_text() for p in sweep.glob(".submitit/*_*/*_log.out"))
    assert logs.count("run finished") == 1
    # re-launched: the completed job is skipped inside its Slurm job, and its dir stays byte for byte
    # as it was (.hydra/, launch.log: sweet_lightning.run_snapshot, reached through the environment)
    done_dir = job_dirs(sweep)[0]
    before = tree_digest(done_dir)
    again = launch([*args, f"hydra.sweep.dir={sweep}"], tmp_path, timeout=300)
    assert "completed already" in again.stdout + again.stderr + "".join(
        p.read_text() for p in sweep.glob(".submitit/*_*/*_log.*")
    )
    assert tree_digest(done_dir) == before
    assert not (sweep / ".snapshots").exists()


@pytest.mark.slow  # Slurm holds a requeued job for about two minutes before it starts again
def test_preempted_job_is_requeued_by_submitit_and_resumes(slurm_cluster, glue_path, tmp_path):
    """USR2 (what Slurm sends before a time limit, or on preemption) -> submitit requeues the same
    job -> it resumes from last.ckpt (resume=true under launcher=slurm) and completes."""
    sweep = tmp_path / "sweep"
    args = [*TINY, "train_size=96", "trainer.max_epochs=3", "hydra.launcher.cpus_per_task=1"]
    args += ["+callbacks.slow._target_=tests.helpers.SleepPerStep", "+callbacks.slow.seconds=2"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(REPO / "launch.py"), "-m", "launcher=slurm", *args, f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.time() + 180
        while not list(sweep.glob("0_*/checkpoints/last.ckpt")):
            assert time.time() < deadline and proc.poll() is None, "no epoch checkpoint appeared"
            time.sleep(1)
        (job_id,) = {p.name for p in sweep.glob(".submitit/*") if p.is_dir() and p.name.isdigit()}
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
        output, _ = proc.communicate(timeout=420)
    finally:
        proc.kill()
    assert proc.returncode == 0, output[-3000:]
    (run,) = job_dirs(sweep)
    assert results(run)["status"] == "completed"
    logs = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.*"))
    assert "Requeued job" in logs and "Restored all states from the checkpoint" in logs
