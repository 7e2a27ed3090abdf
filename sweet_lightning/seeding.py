"""Per-epoch seeding, so a run resumed from a checkpoint ends with the same numbers as one that never
stopped.

Lightning restores weights, optimizer, scheduler and loop counters, but not the random streams: a
resumed run would reshuffle its data from the start of the seed's stream and draw other dropout
masks. Here every epoch starts from streams that depend only on (seed, epoch): the training
sampler's shuffle (or the length-grouped batch sampler's epoch) and the global torch/numpy/random
generators (dropout). Checkpoints are taken at epoch ends (ModelCheckpoint on validation), so
resuming re-enters exactly such an epoch start. Lightning's DistributedSampler already shuffles by
(seed, epoch) under DDP.
"""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch
from torch.utils.data import RandomSampler


def epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


class EpochSeeding(L.Callback):
    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seed = epoch_seed(self.seed, trainer.current_epoch)
        loader = trainer.train_dataloader  # the one DataLoader of GlueDataModule.train_dataloader
        # A generator of the sampler's own, not the loader's: the loader also draws its workers' base
        # seed from its generator when an epoch's iterator is made, which Lightning does before this
        # hook in the first epoch of a (resumed) fit and after it in later ones. The sampler reads
        # the generator lazily, at the epoch's first batch, i.e. always after this hook.
        if isinstance(loader.sampler, RandomSampler):
            loader.sampler.generator = torch.Generator().manual_seed(seed)
        # batching.LengthGroupedBatchSampler draws from (seed, epoch) itself, also lazily; Lightning
        # sets the epoch of `batch_sampler.sampler` only, not of the batch sampler
        if hasattr(loader.batch_sampler, "set_epoch"):
            loader.batch_sampler.set_epoch(trainer.current_epoch)
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
