"""TSN sampling of ``T`` snippets of ``L`` consecutive frames (docs/math.md §1).

Snippet starts live in ``[0, n)`` with ``n = max(num_frames - L + 1, 1)``, the positions at
which a whole snippet fits (or just 0 for videos shorter than one snippet). That range is cut
into ``T`` equal segments with real-valued edges ``t * n / T``:

* training: a start drawn uniformly inside each segment (a segment narrower than one
  position -- videos with fewer than ``T + L - 1`` frames -- collapses to its left edge);
* validation: the centre of each segment, ``floor((t + 1/2) * n / T)`` (as the authors);
* test with ``K`` clips: ``K`` evenly spaced starts per segment,
  ``floor((t + (k + 1/2) / K) * n / T)``; ``K = 1`` is exactly the validation sampling.

Frame ``j`` of a snippet is ``start + j``, clamped to the last frame (``num_frames - 1``), so
videos shorter than a snippet repeat their last frame. All indices are 0-based.
"""

from __future__ import annotations

from typing import Literal

import torch

SNIPPET_LENGTH = 5
SamplingMode = Literal["train", "val", "test"]


def _check(num_frames: int, num_segments: int, snippet_length: int) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    if snippet_length < 1:
        raise ValueError(f"snippet_length must be >= 1, got {snippet_length}")


def snippet_starts(
    num_frames: int, num_segments: int, mode: SamplingMode = "val",
    snippet_length: int = SNIPPET_LENGTH, num_clips: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """First frame of each snippet: shape ``(T,)`` for train/val, ``(num_clips, T)`` for test."""
    _check(num_frames, num_segments, snippet_length)
    positions = max(num_frames - snippet_length + 1, 1)
    segment = torch.arange(num_segments, dtype=torch.float64)
    if mode == "train":
        left = torch.floor(segment * positions / num_segments).long()
        right = torch.floor((segment + 1) * positions / num_segments).long()
        width = (right - left).clamp(min=1)
        # uniform integer in [0, width) per segment
        draw = torch.rand(num_segments, generator=generator, dtype=torch.float64)
        return left + torch.floor(draw * width).long().clamp(max=width - 1)
    if mode == "val":
        return torch.floor((segment + 0.5) * positions / num_segments).long()
    if mode == "test":
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        clip = (torch.arange(num_clips, dtype=torch.float64) + 0.5) / num_clips
        where = (segment.unsqueeze(0) + clip.unsqueeze(1)) * positions / num_segments
        return torch.floor(where).long().clamp(max=positions - 1)
    raise ValueError(f"mode must be 'train', 'val' or 'test', got {mode!r}")


def snippet_frame_indices(
    starts: torch.Tensor, num_frames: int, snippet_length: int = SNIPPET_LENGTH,
) -> torch.Tensor:
    """Expand starts ``(..., T)`` into frame indices ``(..., T * L)``, clamped to the last frame."""
    offsets = torch.arange(snippet_length)
    frames = starts.unsqueeze(-1) + offsets
    return frames.clamp(max=num_frames - 1).flatten(-2)


def sample_frame_indices(
    num_frames: int, num_segments: int, mode: SamplingMode = "val",
    snippet_length: int = SNIPPET_LENGTH, num_clips: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Frame indices of a whole sample: ``(T * L,)``, or ``(num_clips, T * L)`` in test mode."""
    starts = snippet_starts(num_frames, num_segments, mode, snippet_length, num_clips, generator)
    return snippet_frame_indices(starts, num_frames, snippet_length)
