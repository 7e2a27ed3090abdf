"""Length-grouped training batches and length-ordered evaluation (sweet_lightning.batching): every row once
per epoch, less padding, determinism, DDP shards, epoch seeding, and outputs back in dataset order."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from sweet_lightning.batching import LengthGroupedBatchSampler, dataset_order, grouped_batches, length_order
from sweet_lightning.seeding import EpochSeeding

# lengths shaped like GLUE pairs: a long tail, many ties
LENGTHS = np.clip(np.random.default_rng(0).lognormal(3.5, 0.5, 1000).astype(int), 5, 256)


def padded_tokens(lengths: np.ndarray, batches) -> int:
    return int(sum(lengths[b].max() * len(b) for b in batches))


@pytest.mark.parametrize("n", [1000, 37])
def test_each_epoch_is_every_row_once_in_full_batches(n):
    lengths = LENGTHS[:n]
    for epoch in (0, 1):
        batches = grouped_batches(lengths, 16, seed=5, epoch=epoch, mega_batches=10)
        assert sorted(np.concatenate(batches).tolist()) == list(range(n))
        # only the last mega-batch can end in a short batch: as many batches as a plain loader's
        assert sum(len(b) < 16 for b in batches) <= 1 and len(batches) == -(-n // 16)


def test_batches_pad_less_than_random_ones_and_show_no_length_trend():
    grouped = grouped_batches(LENGTHS, 16, seed=5, epoch=0, mega_batches=10)
    perm = np.random.default_rng(5).permutation(len(LENGTHS))
    shuffled = [perm[i : i + 16] for i in range(0, len(perm), 16)]
    assert padded_tokens(LENGTHS, grouped) < 0.75 * padded_tokens(LENGTHS, shuffled)
    widths = [int(LENGTHS[b].max()) for b in grouped]
    # the batches are shuffled after sorting: neither the longest first nor a rising trend
    assert widths != sorted(widths, reverse=True) and widths != sorted(widths)
    assert abs(np.corrcoef(np.arange(len(widths)), widths)[0, 1]) < 0.5


def test_batches_depend_on_seed_and_epoch_only():
    def batches(seed, epoch):
        return [b.tolist() for b in grouped_batches(LENGTHS, 8, seed=seed, epoch=epoch)]

    assert batches(1, 0) == batches(1, 0)
    assert batches(1, 0) != batches(2, 0)
    assert batches(1, 0) != batches(1, 1)


@pytest.mark.parametrize(("n", "batch_size", "world", "mega"), [(1000, 16, 1, 50), (1000, 16, 3, 4), (37, 4, 2, 2),
                                                                (5, 4, 4, 1), (64, 8, 2, 2)])  # fmt: skip
def test_ddp_shards_are_disjoint_cover_the_data_and_have_as_many_batches(n, batch_size, world, mega):
    lengths = LENGTHS[:n]
    shards = []
    for rank in range(world):
        ranks_sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False)
        sampler = LengthGroupedBatchSampler(ranks_sampler, lengths, batch_size, seed=3, mega_batches=mega)
        sampler.set_epoch(2)
        shards.append(list(sampler))
        assert len(sampler) == len(shards[-1])
    assert len({len(s) for s in shards}) == 1  # a rank with fewer batches would stall the others
    rows = Counter(i for shard in shards for batch in shard for i in batch)
    assert set(rows) == set(range(n))
    # as DistributedSampler: repeats only to pad to a multiple of the world size
    assert sum(rows.values()) == world * -(-n // world) and sum(c - 1 for c in rows.values()) == (-n) % world


def test_lightning_hands_its_distributed_sampler_to_the_grouped_sampler():
    """What Lightning does to a custom batch sampler under DDP: re-create it with its DistributedSampler
    as `sampler` (captured init arguments); the rank's shard must follow."""
    from lightning.fabric.utilities.data import _replace_dunder_methods
    from lightning.pytorch.trainer.states import RunningStage
    from lightning.pytorch.utilities.data import _update_dataloader

    dataset = [{"x": i} for i in range(37)]
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        sampler = LengthGroupedBatchSampler(sampler=None, lengths=LENGTHS[:37], batch_size=4, seed=3)
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=lambda rows: [r["x"] for r in rows])
    for rank in (0, 1):
        ddp = _update_dataloader(
            loader, DistributedSampler(dataset, 2, rank, shuffle=True), RunningStage.TRAINING
        )
        assert (ddp.batch_sampler.rank, ddp.batch_sampler.world_size, ddp.batch_sampler.seed) == (rank, 2, 3)
        expected = grouped_batches(LENGTHS[:37], 4, seed=3, epoch=0, rank=rank, world_size=2)
        assert list(ddp) == [b.tolist() for b in expected]


def test_epoch_seeding_sets_the_grouped_samplers_epoch():
    sampler = LengthGroupedBatchSampler(None, LENGTHS, 16, seed=7)
    loader = DataLoader(range(len(LENGTHS)), batch_sampler=sampler)
    trainer = SimpleNamespace(train_dataloader=loader, current_epoch=3)
    EpochSeeding(7).on_train_epoch_start(trainer, None)
    assert [b.tolist() for b in loader] == [b.tolist() for b in grouped_batches(LENGTHS, 16, seed=7, epoch=3)]


@pytest.mark.parametrize("shape", [(10,), (3, 10, 2)])
def test_outputs_go_back_to_dataset_order_even_from_a_partial_pass(shape):
    lengths = np.array([3, 9, 1, 9, 4, 7, 2, 8, 5, 6])
    order = length_order(lengths)
    assert (
        lengths[order].tolist() == sorted(lengths.tolist(), reverse=True) and order[1] < order[2]
    )  # ties stable
    rows = torch.arange(10).reshape(-1, 1).expand(10, int(np.prod(shape)) // 10).T.reshape(shape)
    run = rows.index_select(0 if len(shape) == 1 else 1, torch.from_numpy(order))  # as the loader saw them
    assert torch.equal(dataset_order(order, run), rows)
    # only the first 4 batches-worth of rows (a sanity check): those rows, in dataset order
    part = run[:4] if len(shape) == 1 else run[:, :4]
    restored = dataset_order(order, part)
    seen = sorted(order[:4].tolist())
    assert torch.equal(restored, rows[seen] if len(shape) == 1 else rows[:, seen])


def test_sorted_evaluation_gives_the_unsorted_logits_row_for_row(glue_path, tmp_path):
    """A tiny model validated on dev and calibration, rows in length order vs in file order."""
    from conftest import compose
    from sweep_utils import TINY

    from sweet_lightning.train import build_datamodule, build_evaluation, build_module

    outputs = {}
    for sort in (True, False):
        cfg = [*TINY, "eval_batch_size=16", f"data.sort_eval_by_length={sort}"]
        cfg = compose([*cfg, f"data.glue_dir={glue_path}", f"data.cache_dir={tmp_path}"])
        torch.manual_seed(0)
        module = build_module(cfg)
        datamodule = build_datamodule(cfg)
        evaluation = build_evaluation(cfg)  # what names the outputs by split and keeps them
        trainer = L.Trainer(
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            callbacks=[evaluation],
        )
        trainer.validate(module, datamodule=datamodule, verbose=False)
        outputs[sort] = evaluation.outputs
        if sort:  # the loader really ran another order
            order = trainer.val_dataloaders[0].dataset.order
            assert order.tolist() != sorted(order.tolist())
    assert set(outputs[True]) == set(outputs[False]) == {"dev", "calibration"}
    for split, unsorted in outputs[False].items():
        np.testing.assert_array_equal(outputs[True][split]["labels"], unsorted["labels"])
        np.testing.assert_allclose(outputs[True][split]["logits"], unsorted["logits"], rtol=0, atol=1e-5)
