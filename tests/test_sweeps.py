"""End to end with the tiny model on real RTE: resume, crash isolation and skipping in a multirun,
DDP on CPU, an Optuna search."""

import csv
import importlib.util
import json
import os
import re
import sqlite3

import numpy as np
import pytest
from sweep_utils import TINY, job_dirs, launch, results, run_in_process, tree_digest

from sweet_lightning.data import read_glue_tsv


def scores(run_dir):
    r = results(run_dir)
    return r["metrics"], {s: [e["score"] for e in v["exits"]] for s, v in r["evaluation"].items()}


def csv_rows(run_dir):
    with open(run_dir / "csv/metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("group_by_length", [False, True])
def test_resumed_run_ends_with_the_same_numbers(glue_path, tmp_path, group_by_length):
    """Crash in epoch 2, resume=true from last.ckpt (end of epoch 1): same logits as never stopping,
    with the plain shuffle and with length-grouped batches (whose epoch 2 must not restart at epoch 0's)."""
    # lr large enough that epoch 2's batch order and dropout visibly change the weights; the reported
    # weights (model_selection=last) are the final epoch's, so the comparison sees epoch 2
    run = [
        *TINY,
        "seed=3",
        "train_size=48",
        "lr=1e-3",
        "trainer.max_epochs=2",
        "model_selection=last",
        f"data.group_by_length={group_by_length}",
    ]
    crash = [
        "+callbacks.crash._target_=tests.helpers.CrashAtStep",
        "+callbacks.crash.step=4",
    ]  # 3 steps/epoch
    run_in_process(run, tmp_path / "straight")
    with pytest.raises(Exception, match="simulated crash"):
        run_in_process([*run, *crash], tmp_path / "resumed")
    assert results(tmp_path / "resumed")["status"] == "failed"
    assert (tmp_path / "resumed/checkpoints/last.ckpt").exists()
    before = csv_rows(tmp_path / "resumed")
    assert any(r.get("val/auc") for r in before)  # epoch 1's evaluation was logged before the crash
    run_in_process([*run, "resume=true"], tmp_path / "resumed")
    assert results(tmp_path / "resumed")["status"] == "completed"
    # the training log keeps the interrupted attempt's rows, then the resumed attempt's
    after = csv_rows(tmp_path / "resumed")
    assert [{k: r[k] for k in old} for r, old in zip(after[: len(before)], before, strict=True)] == before
    assert len(after) > len(before)
    assert scores(tmp_path / "resumed") == scores(tmp_path / "straight")
    for split in ("dev", "calibration"):
        a = np.load(tmp_path / f"straight/logits_{split}.npz")["logits"]
        b = np.load(tmp_path / f"resumed/logits_{split}.npz")["logits"]
        np.testing.assert_array_equal(a, b)


def test_last_checkpoint_is_every_epoch_end_even_when_the_metric_does_not_improve(
    glue_path, tmp_path, monkeypatch
):
    """The selection metric (calibration AUC) is best at epoch 0 and never again: best.ckpt stays at
    epoch 0, while last.ckpt (what resume=true continues from) holds the final epoch."""
    import torch

    from sweet_lightning.evaluation.callback import AdaptiveEvaluation

    real = AdaptiveEvaluation.log_epoch

    def worsening(self, trainer, module, report):  # the hold-out's AUC drops every epoch of the fit
        if trainer.state.fn == "fit" and "calibration" in report:
            report = {
                **report,
                "calibration": {**report["calibration"], "auc": 0.9 - 0.1 * trainer.current_epoch},
            }
        real(self, trainer, module, report)

    monkeypatch.setattr(AdaptiveEvaluation, "log_epoch", worsening)
    run = [*TINY, "trainer.max_epochs=3", "++trainer.limit_val_batches=2", "model_selection=calibration"]
    run_in_process(run, tmp_path)
    ckpts = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert torch.load(ckpts / "best.ckpt", weights_only=False)["epoch"] == 0
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["epoch"] == 2


def test_optimized_metric_typo_fails_before_training(glue_path, tmp_path):
    with pytest.raises(ValueError, match=r"optimized_metric=val/acu is not .*use one of: .*val/auc"):
        run_in_process([*TINY, "optimized_metric=val/acu"], tmp_path)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "csv").exists()


def test_run_dir_in_use_is_refused_and_left_alone(glue_path, tmp_path):
    import socket
    import subprocess

    from sweet_lightning.runlock import RunDirLocked

    other = subprocess.Popen(["sleep", "60"])  # a live process holds the run dir
    try:
        tmp_path.mkdir(exist_ok=True)
        holder = {"pid": other.pid, "host": socket.gethostname(), "since": "now", "slurm_job": None}
        (tmp_path / ".lock").write_text(json.dumps(holder))
        with pytest.raises(RunDirLocked, match=f"in use by process {other.pid} on {socket.gethostname()}"):
            run_in_process(TINY, tmp_path)
    finally:
        other.kill()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]  # nothing written, lock kept


def test_multirun_survives_a_failing_job_and_skips_completed_ones(glue_path, tmp_path):
    """seed=1,2 x train_size=32,-1: the train_size=-1 jobs fail, the others still run, and the sweep
    exits 1; re-launching into the same sweep dir skips the completed jobs (redo=true would run them
    again); a re-launch whose jobs meet completed runs of another configuration is refused. Each
    launch's summary counts what that launch did, not the results.json files in the folder."""
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "callbacks=none", "seed=1,2", "train_size=32,-1", f"hydra.sweep.dir={sweep}"]
    first = launch(args, tmp_path)
    assert first.returncode == 1, first.stderr[-3000:]
    jobs = job_dirs(sweep)
    by_args = {(results(j)["config"]["seed"], results(j)["config"]["train_size"]): results(j) for j in jobs}
    assert {k: r["status"] for k, r in by_args.items()} == {
        (1, 32): "completed",
        (2, 32): "completed",
        (1, -1): "failed",
        (2, -1): "failed",
    }
    assert "train_size=-1" in by_args[(1, -1)]["error"]
    # the sweep says it was not clean: counts, and the failed jobs by name and reason
    out = first.stdout + first.stderr
    assert "this launch: 2 completed, 2 failed" in out
    assert out.count("failed job:") == 2 and out.count("train_size=-1 must be > 0") >= 2
    assert "2 of 4 jobs did not complete: exit status 1" in out
    statuses = [results(j)["status"] for j in jobs]
    completed = [j for j in jobs if results(j)["status"] == "completed"]
    done = {j: (j / "results.json").stat().st_mtime_ns for j in completed}
    files = {j: tree_digest(j) for j in completed}
    assert all(".hydra/config.yaml" in f and "launch.log" in f for f in files.values())

    # sweep_fail_exit is no part of a run's identity, so the completed runs are skipped; Hydra writes
    # the new command into .hydra/ and logs into launch.log before the job starts: both are undone
    second = launch([*args, "sweep_fail_exit=false"], tmp_path)  # the switch: failed jobs, exit 0
    assert second.returncode == 0, second.stderr[-3000:]
    out = second.stdout + second.stderr
    assert out.count("completed already") == 2 and "this launch: 2 skipped, 2 failed" in out
    assert all((j / "results.json").stat().st_mtime_ns == t for j, t in done.items())
    assert {j: tree_digest(j) for j in completed} == files
    assert [results(j)["status"] for j in job_dirs(sweep)] == statuses
    assert not (sweep / ".snapshots").exists()  # the launch removed its snapshot

    # another train_size: the completed runs in jobs 0 and 2 are of another configuration
    third = launch([*args[:-2], "train_size=48,-1", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert third.returncode == 1
    out = third.stdout + third.stderr
    assert re.search(r"this launch: (.*)", out).group(1) == "2 refused, 2 failed"
    assert out.count("refused job:") == 2 and re.search(r"differs in: [^)]*\btrain_size\b", out)
    assert all((j / "results.json").stat().st_mtime_ns == t for j, t in done.items())
    assert {j: tree_digest(j) for j in completed} == files  # nor the refused command's config


def test_single_run_failure_is_recorded_and_exits_nonzero(glue_path, tmp_path):
    proc = launch([*TINY, "callbacks=none", "train_size=-1", f"run_dir={tmp_path / 'run'}"], tmp_path)
    assert proc.returncode != 0
    assert results(tmp_path / "run")["status"] == "failed"


def test_single_run_skipped_on_relaunch_leaves_its_dir_byte_identical(glue_path, tmp_path):
    """A single run re-launched into its completed run dir with a key that is no part of the run's
    identity (keep_checkpoints) is skipped, and every file there, .hydra/ and launch.log included,
    keeps its bytes; the console still says why nothing ran."""
    run = tmp_path / "run"
    args = [*TINY, "callbacks=none", f"run_dir={run}"]
    first = launch(args, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = tree_digest(run)
    assert {".hydra/config.yaml", ".hydra/overrides.yaml", "launch.log"} <= set(before)

    second = launch([*args, "keep_checkpoints=false"], tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "completed already" in second.stdout + second.stderr
    assert tree_digest(run) == before


@pytest.mark.slow
def test_sigterm_exits_nonzero_records_interrupted_and_resume_completes(glue_path, tmp_path):
    """SIGTERM after the first epoch ended: exit status 143, results.json "interrupted" naming
    last.ckpt; resume=true then continues from it and completes."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO

    run = [*TINY, "trainer.max_epochs=3", "++trainer.limit_val_batches=2", f"run_dir={tmp_path / 'run'}"]
    slow = ["+callbacks.slow._target_=tests.helpers.SleepPerStep", "+callbacks.slow.seconds=1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(REPO / "launch.py"), *run, *slow]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    last = tmp_path / "run/checkpoints/last.ckpt"
    try:
        deadline = time.time() + 240
        while not last.exists():
            assert time.time() < deadline and proc.poll() is None, "no epoch checkpoint appeared"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, output[-3000:]
    record = results(tmp_path / "run")
    assert record["status"] == "interrupted" and record["checkpoint"] == str(last)
    assert "interrupted by SIGTERM" in output
    again = launch([*run, "resume=true"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert results(tmp_path / "run")["status"] == "completed"
    assert "Restored all states from the checkpoint" in again.stdout + again.stderr


@pytest.mark.slow
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="DDP test needs 2 CPU cores")
def test_ddp_on_cpu_evaluates_every_row_once_in_order(glue_path, tmp_path):
    proc = launch([*TINY, "trainer=ddp", "callbacks=none", f"run_dir={tmp_path / 'run'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = results(tmp_path / "run")
    assert r["status"] == "completed" and r["splits"]["dev"]["num_examples"] == 277
    _, dev_labels, _ = read_glue_tsv("rte", glue_path / "RTE" / "dev.tsv")
    np.testing.assert_array_equal(np.load(tmp_path / "run/logits_dev.npz")["labels"], dev_labels)
    assert (tmp_path / "run/train_ddp_process_1.log").exists()  # rank 1 ran, in this run's dir


@pytest.mark.slow
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="DDP test needs 2 CPU cores")
def test_ddp_on_cpu_length_grouped_shards_are_disjoint_and_cover_the_sample(glue_path, tmp_path):
    """Two ranks, 37 rows, batch 4: each epoch the ranks' rows are the training sample with one row
    repeated (padding to an even count, as DistributedSampler does), in as many batches each."""
    from collections import Counter

    from conftest import compose

    from sweet_lightning.train import build_datamodule

    run = [*TINY, "train_size=37", "batch_size=4", "trainer.max_epochs=2", "data.group_by_length=true"]
    record = ["+callbacks.record._target_=tests.helpers.RecordBatches", f"+callbacks.record.out={tmp_path}"]
    proc = launch([*run, "trainer=ddp", "callbacks=none", *record, f"run_dir={tmp_path / 'run'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dm = build_datamodule(compose([*run, f"data.glue_dir={glue_path}"]))
    dm.setup("fit")
    sample = Counter(tuple(ids) for ids in dm.train_dataset["input_ids"])
    ranks = [json.loads((tmp_path / f"batches_rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 2
    for epoch in (0, 1):
        shards = [Counter(tuple(row) for batch in rank[epoch] for row in batch) for rank in ranks]
        assert len(ranks[0][epoch]) == len(ranks[1][epoch]) == 5  # ceil(19 / 4) batches each
        assert set(shards[0] + shards[1]) == set(sample) and (shards[0] + shards[1]).total() == 38
    assert ranks[0][0] != ranks[0][1]  # another epoch, other batches
    _, dev_labels, _ = read_glue_tsv("rte", glue_path / "RTE" / "dev.tsv")
    np.testing.assert_array_equal(np.load(tmp_path / "run/logits_dev.npz")["labels"], dev_labels)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None, reason="optuna extra"
)
def test_optuna_search_two_trials_then_resume(glue_path, tmp_path):
    args = ["hparams_search=lr_optuna", "hydra.sweeper.n_trials=2", *TINY, "callbacks=none"]
    first = launch(args, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    study = tmp_path / "multirun/optuna/lr-sweet-rte-tiny_bert"
    (sweep,) = [p for p in study.iterdir() if p.is_dir()]
    assert [results(j)["status"] for j in job_dirs(sweep)] == ["completed", "completed"]
    lrs = [results(j)["lr"] for j in job_dirs(sweep)]
    assert all(1e-5 <= lr <= 5e-5 for lr in lrs)

    again = launch([*args, "hydra.sweeper.n_trials=1"], tmp_path)  # same study: resumes it
    assert again.returncode == 0, again.stderr[-3000:]
    with sqlite3.connect(study / "study.db") as db:
        states = [s for (s,) in db.execute("select state from trials")]
    assert states == ["COMPLETE"] * 3


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None, reason="slurm extra"
)
def test_local_parallel_launcher_runs_jobs_in_their_own_processes(glue_path, tmp_path):
    sweep = tmp_path / "sweep"
    proc = launch(
        ["-m", "launcher=local_parallel", *TINY, "callbacks=none", "seed=1,2", f"hydra.sweep.dir={sweep}"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [results(j)["status"] for j in job_dirs(sweep)] == ["completed", "completed"]
    assert len(list(sweep.glob(".submitit/*/*_result.pkl"))) == 2
    # the jobs, in processes of their own, reported their outcomes to the launching command
    assert "this launch: 2 completed" in proc.stdout + proc.stderr


@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None, reason="optuna extra"
)
def test_optuna_study_goes_on_past_failed_trials(glue_path, tmp_path):
    # train_size=-1 trials fail (recorded FAIL, the study goes on); the others complete
    sizes = "+hydra.sweeper.params.train_size='choice(-1,32)'"
    tiny = [a for a in TINY if not a.startswith("train_size=")]  # the command line would beat the search
    proc = launch(
        ["hparams_search=lr_optuna", "hydra.sweeper.n_trials=4", *tiny, "callbacks=none", sizes], tmp_path
    )
    with sqlite3.connect(tmp_path / "multirun/optuna/lr-sweet-rte-tiny_bert/study.db") as db:
        states = sorted(s for (s,) in db.execute("select state from trials"))
    assert "FAIL" in states and "COMPLETE" in states and "RUNNING" not in states, states
    # the search went on, and the command still says that trials failed
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert (proc.stdout + proc.stderr).count("failed job:") == states.count("FAIL")
