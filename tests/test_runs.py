"""Run bookkeeping (skip/redo/conflict, failure records), per-epoch seeds, DDP eval gather: no training."""

import json
import logging
import os

import pytest
import torch
from omegaconf import OmegaConf
from sweep_utils import tree_digest
from torch.utils.data import DistributedSampler

from sweet_lightning import run_snapshot, runs
from sweet_lightning.methods.base import gather_rows
from sweet_lightning.seeding import epoch_seed


def cfg(**over):
    base = {"method": {"name": "sweet"}, "seed": 1, "lr": 2e-5, "optimized_metric": "val/auc", "redo": False}
    return OmegaConf.create({**base, **over})


def write(out, status, config, metrics=None):
    out.mkdir(parents=True, exist_ok=True)
    record = {"status": status, "config": OmegaConf.to_container(config), "metrics": metrics or {}}
    (out / "results.json").write_text(json.dumps(record))


def test_snapshot_undoes_what_hydra_wrote_into_a_completed_run_dir(tmp_path, monkeypatch):
    """What Hydra's run_job does in a job's dir before the job runs (new .hydra/ files, the job's log
    opened for appending) is undone in a completed run dir by run_snapshot.restore, and what the job
    logs afterwards stays out of it; the launch's end removes the snapshot."""
    monkeypatch.setenv(run_snapshot.SNAPSHOT_ENV, "unset")  # monkeypatch unsets it again afterwards
    sweep = tmp_path / "sweep"
    done, failed = sweep / "0_done", sweep / "1_failed"
    write(done, "completed", cfg())
    write(failed, "failed", cfg())
    (done / ".hydra").mkdir()
    (done / ".hydra/config.yaml").write_text("seed: 1\n")
    (done / "launch.log").write_text("trained\n")
    os.utime(done / "launch.log", ns=(10**18, 10**18))
    before = tree_digest(done)
    callback = run_snapshot.KeepSkippedRunsIntact()
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}, "output_subdir": ".hydra"}})
    callback.on_multirun_start(config)

    (done / ".hydra/config.yaml").write_text("seed: 1\nkeep_checkpoints: false\n")
    (done / ".hydra/hydra.yaml").write_text("hydra: {}\n")  # not there before
    handler = logging.FileHandler(done / "launch.log")
    logging.getLogger().addHandler(handler)
    try:
        logging.getLogger("job").warning("skipping: completed already")
        assert run_snapshot.restore(done) and not run_snapshot.restore(failed)
        logging.getLogger("job").warning("after the restore")
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    assert tree_digest(done) == before
    assert (done / "launch.log").stat().st_mtime_ns == 10**18

    callback.on_multirun_end(config)
    assert not (sweep / ".snapshots").exists() and run_snapshot.SNAPSHOT_ENV not in os.environ


def test_fresh_dir_runs(tmp_path):
    assert runs.completed_value(cfg(), tmp_path) is None


def test_completed_run_is_skipped_with_its_metric(tmp_path):
    write(tmp_path, "completed", cfg(resume=True, run_dir="x"), {"val/auc": 0.75})
    # resume/run_dir/data/logger do not make a run another run
    assert runs.completed_value(cfg(run_dir="y", data={"glue_dir": "z"}), tmp_path) == 0.75


def test_data_paths_and_workers_are_not_identity_but_length_grouping_is(tmp_path):
    data = {"glue_dir": "a", "cache_dir": "b", "num_workers": 0, "group_by_length": False}
    write(tmp_path, "completed", cfg(data={**data, "sort_eval_by_length": True}), {"val/auc": 0.75})
    other_place = {"glue_dir": "c", "cache_dir": None, "num_workers": 4, "sort_eval_by_length": False}
    assert runs.completed_value(cfg(data={**data, **other_place}), tmp_path) == 0.75
    # grouped batches are other batches: other numbers, so the stored run is not this one
    with pytest.raises(runs.RunDirConflict, match=r"differs in: data\.group_by_length"):
        runs.completed_value(cfg(data={**data, "group_by_length": True}), tmp_path)


def test_run_stored_before_length_grouping_existed_counts_as_ungrouped(tmp_path):
    write(tmp_path, "completed", cfg(data={"glue_dir": "a", "num_workers": 0}), {"val/auc": 0.75})
    assert runs.completed_value(cfg(data={"glue_dir": "a", "group_by_length": False}), tmp_path) == 0.75
    with pytest.raises(runs.RunDirConflict, match=r"differs in: data\.group_by_length"):
        runs.completed_value(cfg(data={"glue_dir": "a", "group_by_length": True}), tmp_path)


def test_run_moved_with_its_checkout_is_the_same_run(tmp_path):
    """A committed sweep re-launched from another clone: the stored paths under the old run dir differ,
    the run does not (without this, every committed run was refused as another configuration)."""
    old, new = tmp_path / "old" / "run", tmp_path / "new" / "run"

    def at(out, **over):
        paths = {
            "trainer": {"default_root_dir": str(out)},
            "callbacks": {"ckpt": {"dirpath": f"{out}/checkpoints"}},
        }
        return cfg(**paths, **over)

    write(new, "completed", at(old), {"val/auc": 0.75})
    assert runs.completed_value(at(new), new) == 0.75
    # a path outside the run dir is still part of what identifies it
    with pytest.raises(runs.RunDirConflict, match=r"trainer\.default_root_dir"):
        runs.completed_value(at(tmp_path / "elsewhere"), new)
    with pytest.raises(runs.RunDirConflict, match="differs in: lr"):
        runs.completed_value(at(new, lr=3e-5), new)


def test_redo_and_failed_runs_run_again(tmp_path):
    write(tmp_path, "completed", cfg(), {"val/auc": 0.75})
    assert runs.completed_value(cfg(redo=True), tmp_path) is None
    write(tmp_path, "failed", cfg())
    assert runs.completed_value(cfg(), tmp_path) is None


def test_completed_run_of_another_config_is_a_conflict(tmp_path):
    write(tmp_path, "completed", cfg(lr=3e-5), {"val/auc": 0.75})
    with pytest.raises(runs.RunDirConflict, match="differs in: lr"):
        runs.completed_value(cfg(), tmp_path)


def test_failure_record(tmp_path):
    try:
        raise ValueError("boom")
    except ValueError as err:
        runs.record_failure(cfg(), tmp_path, err)
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "failed" and record["error"] == "ValueError: boom"
    assert "raise ValueError" in record["traceback"] and record["config"]["lr"] == 2e-5


def test_failure_never_overwrites_a_completed_run(tmp_path):
    write(tmp_path, "completed", cfg(lr=3e-5), {"val/auc": 0.75})
    runs.record_failure(cfg(), tmp_path, RuntimeError("conflict"))
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "completed"
    runs.record_failure(cfg(redo=True), tmp_path, RuntimeError("redo failed"))
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "failed"


def test_resume_checkpoint():
    assert runs.resume_checkpoint(cfg(resume=True)) == "last"
    assert runs.resume_checkpoint(cfg()) is None


def test_epoch_seeds_depend_on_seed_and_epoch_only():
    assert epoch_seed(1, 0) == epoch_seed(1, 0)
    assert len({epoch_seed(s, e) for s in (1, 2) for e in (0, 1)}) == 4


class FakeRanks:
    """all_gather over W simulated ranks, each holding the shard DistributedSampler gives it."""

    def __init__(self, shards):
        self.shards = shards

    def all_gather(self, tensor):
        return torch.stack([s.reshape(tensor.shape) for s in self.shards])


@pytest.mark.parametrize(("rows", "world"), [(277, 2), (10, 3), (9, 3), (5, 4)])
def test_ddp_gather_restores_dataset_order_without_padding(rows, world):
    data = torch.arange(rows)
    logits = torch.stack([data * 10.0, data * 10.0 + 1], -1)[None].repeat(3, 1, 1)  # [E=3, N, C=2]
    label_shards, logit_shards = [], []
    for rank in range(world):
        idx = list(DistributedSampler(range(rows), num_replicas=world, rank=rank, shuffle=False))
        label_shards.append(data[idx])
        logit_shards.append(logits[:, idx])
    labels = gather_rows(FakeRanks(label_shards), label_shards[0], rows)
    gathered = gather_rows(FakeRanks(logit_shards), logit_shards[0], rows)
    assert torch.equal(labels, data)
    assert torch.equal(gathered, logits)


# ---- run-dir lock ------------------------------------------------------------------------------


def hold_lock(out, **holder):
    import socket

    out.mkdir(parents=True, exist_ok=True)
    record = {"pid": 1, "host": socket.gethostname(), "since": "2026-01-01 00:00:00", "slurm_job": None}
    (out / ".lock").write_text(json.dumps({**record, **holder}))


def ended_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_held_by_a_live_process_refuses_with_its_pid_and_host(tmp_path):
    import socket
    import subprocess

    from sweet_lightning.runlock import RunDirLocked, acquire

    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        hold_lock(tmp_path, pid=sleeper.pid)
        with pytest.raises(RunDirLocked) as err:
            acquire(tmp_path)
    finally:
        sleeper.kill()
    message = str(err.value)
    assert f"process {sleeper.pid} on {socket.gethostname()}" in message and "\n" not in message
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == sleeper.pid  # left alone


def test_stale_lock_of_an_ended_process_is_taken_over_with_a_warning(tmp_path, caplog):
    import os

    from sweet_lightning.runlock import acquire, release

    dead = ended_pid()
    hold_lock(tmp_path, pid=dead)
    with caplog.at_level("WARNING"):
        lock = acquire(tmp_path)
    assert f"its process {dead} no longer runs" in caplog.text
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    release(lock)
    assert not lock.exists() and list(tmp_path.iterdir()) == []  # no temporary files left


def test_lock_from_another_host_is_kept_unless_it_is_this_slurm_job(tmp_path, monkeypatch):
    from sweet_lightning.runlock import RunDirLocked, acquire

    hold_lock(tmp_path, host="node-elsewhere", pid=123, slurm_job="77")
    monkeypatch.setenv("SLURM_JOB_ID", "78")
    with pytest.raises(RunDirLocked, match=r"process 123 on node-elsewhere .*delete .*\.lock"):
        acquire(tmp_path)
    monkeypatch.setenv("SLURM_JOB_ID", "77")  # the same job, requeued onto another node
    assert acquire(tmp_path).exists()


def test_ddp_ranks_above_zero_take_no_lock(tmp_path, monkeypatch):
    import subprocess

    from lightning.pytorch.utilities import rank_zero_only

    from sweet_lightning.runlock import run_dir_lock

    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        hold_lock(tmp_path, pid=sleeper.pid)  # rank 0 holds it
        monkeypatch.setattr(rank_zero_only, "rank", 1)
        with run_dir_lock(tmp_path):
            pass
    finally:
        sleeper.kill()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == sleeper.pid


# ---- optimized_metric, CSV history ---------------------------------------------------------------


def test_optimized_metric_typo_lists_the_names_runs_report():
    from sweet_lightning.metrics import check_optimized_metric, run_metrics

    with pytest.raises(ValueError, match=r"^optimized_metric=val/acu is not") as err:
        check_optimized_metric("val/acu", num_exits=4)
    assert "val/auc" in str(err.value) and "val/exit4/score" in str(err.value) and "\n" not in str(err.value)
    for name in run_metrics([0.5, 0.6, 0.7, 0.8], auc=0.6):  # every name a run stores is accepted
        check_optimized_metric(name, num_exits=4)


def test_resumed_csv_log_keeps_the_earlier_rows(tmp_path):
    import csv

    from sweet_lightning.logs import ResumableCSVLogger

    def rows():
        with open(tmp_path / "csv/metrics.csv", newline="") as f:
            return list(csv.DictReader(f))

    first = ResumableCSVLogger(tmp_path, name="csv", version="")
    first.log_metrics({"train/loss": 1.0}, step=0)
    first.save()
    resumed = ResumableCSVLogger(tmp_path, name="csv", version="", append=True)
    resumed.log_metrics({"train/loss": 0.5}, step=1)
    resumed.log_metrics({"val/auc": 0.7}, step=1)  # a new column widens the header
    resumed.save()
    assert [(r["step"], r["train/loss"], r["val/auc"]) for r in rows()] == [
        ("0", "1.0", ""),
        ("1", "0.5", ""),
        ("1", "", "0.7"),
    ]
    fresh = ResumableCSVLogger(tmp_path, name="csv", version="")  # not resuming: starts over
    fresh.log_metrics({"train/loss": 0.1}, step=0)
    fresh.save()
    assert [r["train/loss"] for r in rows()] == ["0.1"]


def test_run_stored_before_the_constructor_nodes_is_the_same_run(tmp_path):
    """conf/train.yaml's `module`, `data` and `evaluation` nodes only pass on other keys to the
    constructors: a run stored before they existed (as tests/fixtures/old_run) is skipped by the same
    command, and still conflicts with a command that changes a key they read."""
    from omegaconf import open_dict

    from tests.conftest import compose

    def job(*overrides):
        cfg = compose(["model=tiny_bert", "train_size=32", "lr=5e-4", f"run_dir={tmp_path}", *overrides])
        with open_dict(cfg):
            del cfg["hydra"]  # as a Hydra job receives it
        return cfg

    stored = runs.resolved(job())
    del stored["module"]
    passed_on = "task tokenizer train_size max_seq_length batch_size eval_batch_size seed calibration_size"
    for key in ["_target_", *passed_on.split()]:
        del stored["data"][key]
    for key in ("_target_", "policy", "calibration", "seed"):
        del stored["evaluation"][key]
    write(tmp_path, "completed", OmegaConf.create(stored), {"val/auc": 0.75})
    assert runs.completed_value(job(), tmp_path) == 0.75
    assert {"module.optimizer", "data.train_size", "evaluation.policy"} <= set(runs.derived_keys(job()))
    with pytest.raises(runs.RunDirConflict, match=r"differs in: train_size\)"):
        runs.completed_value(job("train_size=48"), tmp_path)


def test_a_passed_on_key_keeps_its_top_level_value(tmp_path):
    """`data.train_size=500` would train on 500 rows while results.json, the report and the skip logic
    read train_size: refused before training, naming the key to set instead."""
    from sweet_lightning.train import check_config, passed_on_keys
    from tests.conftest import compose

    pairs = passed_on_keys()
    assert pairs["data.train_size"] == "train_size" and pairs["evaluation.policy"] == "exit_policy"
    check_config(compose(["model=tiny_bert", "train_size=48"]))  # the top-level key: fine
    with pytest.raises(
        ValueError, match=r"^data\.train_size=500 differs from train_size=48, .* set train_size="
    ):
        check_config(compose(["model=tiny_bert", "train_size=48", "data.train_size=500"]))


def test_a_stored_passed_on_key_is_compared(tmp_path):
    """A stored run that has the constructor nodes is compared on them too (only runs from before
    they existed are matched through the top-level keys alone)."""
    current = OmegaConf.create(
        {**OmegaConf.to_container(cfg()), "train_size": 48, "data": {"train_size": "${train_size}"}}
    )
    stored = OmegaConf.create(
        {**OmegaConf.to_container(cfg()), "train_size": 48, "data": {"train_size": 500}}
    )
    write(tmp_path, "completed", stored, {"val/auc": 0.75})
    with pytest.raises(runs.RunDirConflict, match=r"differs in: data\.train_size"):
        runs.completed_value(current, tmp_path)
