"""A sampler that shards a dataset over ranks and hands each item its own augmentation seed.

It yields ``(index, seed)`` keys. The seed depends only on ``(base_seed, epoch, index)``, so a
sample is augmented the same way whichever rank or DataLoader worker loads it and however many
of them there are: one process with a global batch ``B`` and ``R`` processes with ``B / R``
each see the same samples with the same crops, and a resumed run redraws exactly what the
uninterrupted run drew.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import Sampler

_SEED_MASK = (1 << 63) - 1


def sample_seed(base_seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one item of one epoch (splitmix64-style mixing of the three ints)."""
    value = (base_seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index) & ((1 << 64) - 1)
    value ^= value >> 30
    value = (value * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    value ^= value >> 27
    value = (value * 0x94D049BB133111EB) & ((1 << 64) - 1)
    value ^= value >> 31
    return value & _SEED_MASK


class ShardedSampler(Sampler):
    """Items ``rank, rank + world, ...`` of an (optionally shuffled) order of the dataset.

    ``pad=True`` (training) repeats items from the start so every rank gets the same count,
    as DistributedSampler does; ``pad=False`` (evaluation) gives every item exactly once,
    ranks differing by at most one item.
    """

    def __init__(self, num_items: int, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, pad: bool = True):
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas), got rank={rank}, "
                             f"num_replicas={num_replicas}")
        self.num_items = num_items
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.pad = pad
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch; ``start`` skips this rank's first items (to resume mid-epoch)."""
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.epoch = epoch
        self.start = start

    def order(self) -> list[int]:
        """The global order of this epoch, before sharding (padded when ``pad``)."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, -1))
            order = torch.randperm(self.num_items, generator=generator).tolist()
        else:
            order = list(range(self.num_items))
        if self.pad:
            total = math.ceil(self.num_items / self.num_replicas) * self.num_replicas
            order += (order * math.ceil(total / self.num_items))[: total - self.num_items]
        return order

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.order()[self.rank::self.num_replicas][self.start:]:
            yield index, sample_seed(self.seed, self.epoch, index)

    def shard_size(self) -> int:
        """Items of this rank in a whole epoch."""
        if self.pad:
            return math.ceil(self.num_items / self.num_replicas)
        return len(range(self.rank, self.num_items, self.num_replicas))

    def __len__(self) -> int:
        return max(self.shard_size() - self.start, 0)
