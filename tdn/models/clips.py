"""Checking and flattening the clip tensors that TDN and TSN models take (docs/math.md §1)."""

from __future__ import annotations

import torch

FRAMES_PER_SNIPPET = 5
CHANNELS_PER_FRAME = 3
SNIPPET_CHANNELS = FRAMES_PER_SNIPPET * CHANNELS_PER_FRAME  # 15
CENTRE_FRAME = FRAMES_PER_SNIPPET // 2  # x3, the RGB frame TDN's appearance path sees


def expected_shapes(num_segments: int) -> str:
    return (f"(N, {num_segments}*{SNIPPET_CHANNELS}={num_segments * SNIPPET_CHANNELS}, H, W) "
            f"or (N, {num_segments}, {FRAMES_PER_SNIPPET}, {CHANNELS_PER_FRAME}, H, W): "
            f"{num_segments} segments of {FRAMES_PER_SNIPPET} RGB frames each")


def snippets(x: torch.Tensor, num_segments: int) -> torch.Tensor:
    """``x`` as (N*T, 15, H, W): one row per snippet, its 5 frames stacked on channels."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 6:
        if tuple(x.shape[1:4]) != (num_segments, FRAMES_PER_SNIPPET, CHANNELS_PER_FRAME):
            raise ValueError(f"input of shape {tuple(x.shape)} does not match the expected "
                             f"{expected_shapes(num_segments)}")
        return x.reshape((-1, SNIPPET_CHANNELS) + x.shape[-2:])
    if x.dim() != 4:
        raise ValueError(f"input must be 4-D or 6-D, got shape {tuple(x.shape)}; expected "
                         f"{expected_shapes(num_segments)}")
    channels = x.shape[1]
    if channels % SNIPPET_CHANNELS:
        raise ValueError(
            f"input has {channels} channels, not a multiple of {SNIPPET_CHANNELS} (5 RGB frames "
            f"per segment); expected {expected_shapes(num_segments)}")
    if channels // SNIPPET_CHANNELS != num_segments:
        raise ValueError(
            f"input holds {channels // SNIPPET_CHANNELS} segments but the model was built for "
            f"num_segments={num_segments}; expected {expected_shapes(num_segments)}")
    # reshape, not view: a channels_last batch cannot be viewed as (N*T, 15, H, W).
    return x.reshape((-1, SNIPPET_CHANNELS) + x.shape[-2:])


def centre_frames(snips: torch.Tensor) -> torch.Tensor:
    """The centre RGB frame of each (N*T, 15, H, W) snippet, as (N*T, 3, H, W) (a view)."""
    start = CENTRE_FRAME * CHANNELS_PER_FRAME
    return snips[:, start:start + CHANNELS_PER_FRAME]


def segment_consensus(logits: torch.Tensor, num_segments: int) -> torch.Tensor:
    """TSN consensus: the mean of the per-segment logits, (N*T, K) -> (N, K)."""
    return logits.view((-1, num_segments) + logits.shape[1:]).mean(dim=1)
