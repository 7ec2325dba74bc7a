"""DataLoader assembly: sharded sampler + skipping collate + worker settings."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from .dataset import VideoDataset, collate_samples
from .sharded_sampler import ShardedSampler


def build_loader(dataset: VideoDataset, batch_size: int, *, train: bool, num_replicas: int = 1,
                 rank: int = 0, seed: int = 0, workers: int = 0, pin_memory: bool = False,
                 drop_last: bool = False) -> DataLoader:
    """A loader over this rank's shard. Training shuffles and pads the shard to equal length
    on every rank; evaluation keeps dataset order and gives each item to exactly one rank."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    sampler = ShardedSampler(len(dataset), num_replicas, rank, shuffle=train, seed=seed, pad=train)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
        # the loader draws its workers' base seed from its own generator, never from the
        # global one, so the model's random draws (dropout) do not depend on the data pipeline
        generator=torch.Generator().manual_seed(seed),
        collate_fn=collate_samples, pin_memory=pin_memory, drop_last=drop_last,
        # several small items per worker keep the GPU fed without holding many videos in RAM
        prefetch_factor=2 if workers > 0 else None,
        persistent_workers=False,
    )
