"""Run bookkeeping (skip/redo/conflict, failure records), per-epoch seeds, DDP eval gather: no training."""

import json

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DistributedSampler

from sweet_lightning import runs
from sweet_lightning.methods.base import gather_rows
from sweet_lightning.seeding import epoch_seed


def cfg(**over):
    base = {"method": {"name": "sweet"}, "seed": 1, "lr": 2e-5, "optimized_metric": "val/auc", "redo": False}
    return OmegaConf.create({**base, **over})


def write(out, status, config, metrics=None):
    out.mkdir(parents=True, exist_ok=True)
    record = {"status": status, "config": OmegaConf.to_container(config), "metrics": metrics or {}}
    (out / "results.json").write_text(json.dumps(record))


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
