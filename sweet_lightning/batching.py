"""Less padding: training batches grouped by length, evaluation rows in length order.

Dynamic padding pads a batch to its longest row, so a batch of similar lengths wastes little
compute. Training batches are grouped (`LengthGroupedBatchSampler`) only as far as shuffling allows:
each epoch's seeded permutation is cut into mega-batches, each sorted by length and cut into batches,
and the batches are shuffled again so no length trend runs through an epoch. Evaluation rows are
simply sorted (`LengthOrdered`); whoever collects their outputs puts them back in dataset order with
`dataset_order`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, Dataset, DistributedSampler, Sampler

from sweet_lightning.seeding import epoch_seed

# Batches per mega-batch. Larger sorts over more rows (less padding) but lets a batch's lengths say
# more about which rows share it; 50 is the common choice of length-grouping samplers.
MEGA_BATCHES = 50


def length_order(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    """Positions sorted by length, longest first (peak memory shows at once); ties in position order."""
    return np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")


def token_lengths(dataset) -> np.ndarray:
    """Tokens per row of a tokenised dataset (before padding)."""
    return np.fromiter((len(ids) for ids in dataset["input_ids"]), dtype=np.int64, count=len(dataset))


def grouped_batches(
    lengths: np.ndarray,
    batch_size: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    mega_batches: int = MEGA_BATCHES,
) -> list[np.ndarray]:
    """One epoch's batches of dataset positions for `rank` of `world_size`; a function of its arguments only.

    Every rank draws the same permutation and batch order, so the ranks' shards are disjoint and their
    k-th batches have similar lengths (no rank waits on another's long batch). As DistributedSampler
    does, the permutation is padded with its first rows to a multiple of `world_size`, so that every
    rank gets as many rows and batches (a rank with fewer would stall the others' gradient sync).
    """
    rng = np.random.default_rng(epoch_seed(seed, epoch))
    order = rng.permutation(len(lengths))
    order = np.concatenate([order, order[: (-len(order)) % world_size]])
    mega = mega_batches * batch_size * world_size  # a multiple of world_size: equal shares per rank
    batches = []
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        # stable: equal lengths keep the permutation's order, so the tie-break is seeded too
        chunk = chunk[length_order(lengths[chunk])]
        mine = chunk[rank::world_size]  # rank r's i-th row is the chunk's (i*W + r)-th longest
        batches += [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class LengthGroupedBatchSampler(BatchSampler):
    """Training batches of similar lengths, drawn by `grouped_batches` from (seed, epoch).

    `sampler` only says which share of the rows is this process's: under DDP, Lightning builds a
    DistributedSampler and hands it to a custom batch sampler through this argument (it re-creates the
    sampler with it); its rank and world size pick the shard, its own shuffle is not used. Any other
    sampler (the DataLoader's default SequentialSampler) means a single process with every row.
    Call `set_epoch` before each epoch (`seeding.EpochSeeding` does): Lightning only sets the epoch of
    `batch_sampler.sampler`, not of the batch sampler itself.
    """

    def __init__(
        self,
        sampler: Sampler | None,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        seed: int,
        mega_batches: int = MEGA_BATCHES,
    ) -> None:
        super().__init__(sampler if sampler is not None else range(len(lengths)), batch_size, drop_last=False)
        if mega_batches < 1:
            raise ValueError(f"mega_batches must be >= 1 (got {mega_batches}); the default is {MEGA_BATCHES}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.seed = int(seed)
        self.mega_batches = int(mega_batches)
        ddp = isinstance(sampler, DistributedSampler)
        self.rank, self.world_size = (sampler.rank, sampler.num_replicas) if ddp else (0, 1)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        # the body runs at the first batch, not when the DataLoader makes its iterator: a set_epoch
        # between the two still counts
        args = (self.batch_size, self.seed, self.epoch, self.rank, self.world_size, self.mega_batches)
        for batch in grouped_batches(self.lengths, *args):
            yield batch.tolist()

    def __len__(self) -> int:
        rows = -(-len(self.lengths) // self.world_size)  # per rank, padding included
        per_mega = self.mega_batches * self.batch_size  # rows per rank of a full mega-batch
        full, rest = divmod(rows, per_mega)
        return full * self.mega_batches + -(-rest // self.batch_size)


class LengthOrdered(Dataset):
    """A view of `dataset` longest row first: row i of the view is row `order[i]` of the dataset."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset
        self.order = length_order(token_lengths(dataset))

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int):
        return self.dataset[int(self.order[i])]

    def __getitems__(self, indices: list[int]) -> list:
        # the DataLoader fetches a whole batch at once through this; a tokenised datasets.Dataset
        # answers that in one read instead of one per row
        return self.dataset.__getitems__([int(self.order[i]) for i in indices])


def dataset_order(order: np.ndarray, tensor: torch.Tensor) -> torch.Tensor:
    """Rows collected in a `LengthOrdered` view's order, put in dataset order.

    `tensor` is [N] labels or [E, N, ...] per-exit arrays, as in the evaluation buffers. When only the
    view's first n rows were run (the sanity check, `limit_val_batches`), those n rows come
    back sorted by dataset position.
    """
    dim = 0 if tensor.dim() == 1 else 1
    seen = order[: tensor.shape[dim]]
    return tensor.index_select(dim, torch.from_numpy(np.argsort(seen, kind="stable")))
