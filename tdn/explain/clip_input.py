"""A video file as the clip a model takes, with the frames it was made of (for the figures)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

FRAMES_PER_SNIPPET = 5


@dataclass
class SampledClip:
    frames: torch.Tensor  # (T*5, 3, S, S) uint8 RGB, after resizing and the centre crop
    indices: list[int]  # the video frame each of them is
    clip: torch.Tensor  # (1, T*15, S, S) float32, normalised as the models were trained

    @property
    def num_segments(self) -> int:
        return self.frames.shape[0] // FRAMES_PER_SNIPPET

    def centre_frames(self) -> torch.Tensor:
        """(T, 3, S, S): the middle frame of each snippet, the one TDN's RGB path sees."""
        return self.frames[FRAMES_PER_SNIPPET // 2::FRAMES_PER_SNIPPET]


def sample_clip(path: str, num_segments: int, input_size: int, decoder: str = "auto",
                scale_size: int | None = None) -> SampledClip:
    """The centred evaluation sample of ``path`` (the one ``tdn predict`` scores with one clip
    and one crop): T snippets of 5 frames, short side resized, centre crop."""
    from ..data import EvalTransform, normalize_frames, sample_frame_indices
    from ..data.decoding import read_video_sampled

    chosen: list[int] = []

    def choose(count: int) -> list[int]:
        chosen.extend(sample_frame_indices(count, num_segments, "val").tolist())
        return chosen

    frames = read_video_sampled(path, choose, decoder)
    views, _ = EvalTransform(input_size, scale_size)(frames, 0)
    frames = views[0]
    size = frames.shape[-1]
    clip = normalize_frames(frames).reshape(1, -1, size, size)
    return SampledClip(frames, chosen, clip)
