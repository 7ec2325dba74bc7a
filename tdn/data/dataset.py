"""The video dataset: annotation records -> sampled, decoded, augmented uint8 frames.

An item is a :class:`Sample` with ``frames`` of shape ``(V, T*L, 3, S, S)`` (``V`` views =
clips x crops, ``L = 5`` frames per snippet). An item that cannot be read becomes a
:class:`SkippedItem` (path and reason) instead of an exception, and :func:`collate_samples`
drops it from the batch while keeping the record, so the training loop can report and count
skipped items without dying on one corrupt video.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Sequence

import torch
from torch.utils.data import Dataset

from .annotations import VideoRecord, check_image_template
from .decoding import (DecoderName, FrameReadError, read_folder_frames, read_video_sampled,
                       resolve_decoder)
from .frame_sampling import SNIPPET_LENGTH, SamplingMode, sample_frame_indices

Transform = Callable[[torch.Tensor, int, "torch.Generator | None"], tuple[torch.Tensor, int]]


class Sample(NamedTuple):
    frames: torch.Tensor  # (V, T*L, 3, S, S) uint8
    label: int
    index: int


class SkippedItem(NamedTuple):
    index: int
    path: str
    reason: str


@dataclass
class Batch:
    """A collated batch: ``frames`` (N, V, T*L, 3, S, S) uint8, ``labels`` (N,),
    ``indices`` (N,) dataset positions, and the items that were skipped."""

    frames: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    skipped: list[SkippedItem] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.numel())

    def pin_memory(self) -> "Batch":
        return Batch(self.frames.pin_memory(), self.labels.pin_memory(),
                     self.indices.pin_memory(), self.skipped)


def collate_samples(items: Sequence[Sample | SkippedItem]) -> Batch:
    samples = [item for item in items if isinstance(item, Sample)]
    skipped = [item for item in items if isinstance(item, SkippedItem)]
    if not samples:
        return Batch(torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long),
                     torch.empty(0, dtype=torch.long), skipped)
    return Batch(
        frames=torch.stack([s.frames for s in samples]),
        labels=torch.tensor([s.label for s in samples], dtype=torch.long),
        indices=torch.tensor([s.index for s in samples], dtype=torch.long),
        skipped=skipped,
    )


class VideoDataset(Dataset):
    """TSN-sampled snippets from frame folders or video files.

    Args:
        records: annotation records (see :func:`tdn.data.read_annotation_list`).
        num_segments: ``T``.
        transform: ``TrainTransform`` / ``EvalTransform`` (or any callable with their API).
        mode: ``"train"`` (random start per segment), ``"val"`` (centre), ``"test"``
            (``num_clips`` starts per segment).
        image_template / first_frame_index: frame-file naming of frame folders.
        decoder: ``"auto"`` (decord if installed, else PyAV), ``"pyav"`` or ``"decord"``.

    Keys are ints, or ``(index, seed)`` pairs from :class:`ShardedSampler`; the seed drives
    the random sampling and augmentation of that item.
    """

    def __init__(self, records: Sequence[VideoRecord], num_segments: int, transform: Transform,
                 mode: SamplingMode = "val", num_clips: int = 1,
                 snippet_length: int = SNIPPET_LENGTH, image_template: str = "img_{:05d}.jpg",
                 first_frame_index: int = 1, decoder: DecoderName = "auto"):
        if not records:
            raise ValueError("records must not be empty")
        if num_segments < 1:
            raise ValueError(f"num_segments must be >= 1, got {num_segments}")
        if mode not in ("train", "val", "test"):
            raise ValueError(f"mode must be 'train', 'val' or 'test', got {mode!r}")
        if num_clips < 1 or (num_clips > 1 and mode != "test"):
            raise ValueError(f"num_clips must be 1 unless mode='test' (got {num_clips}, {mode!r})")
        check_image_template(image_template)
        self.records = list(records)
        self.num_segments = num_segments
        self.transform = transform
        self.mode = mode
        self.num_clips = num_clips
        self.snippet_length = snippet_length
        self.image_template = image_template
        self.first_frame_index = first_frame_index
        self.decoder = resolve_decoder(decoder)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    def _indices(self, num_frames: int, generator: torch.Generator) -> list[int]:
        return sample_frame_indices(num_frames, self.num_segments, self.mode, self.snippet_length,
                                    self.num_clips, generator).flatten().tolist()

    def _read(self, record: VideoRecord, generator: torch.Generator) -> torch.Tensor:
        if record.is_frame_folder:
            return read_folder_frames(record.path, self._indices(record.num_frames, generator),
                                      self.image_template, self.first_frame_index)
        # one open per item: the frame count and the frames come from the same container
        return read_video_sampled(record.path, lambda count: self._indices(count, generator),
                                  self.decoder)

    def __getitem__(self, key) -> Sample | SkippedItem:
        index, seed = key if isinstance(key, tuple) else (key, None)
        record = self.records[index]
        generator = torch.Generator()
        generator.manual_seed(seed if seed is not None else index)
        try:
            frames = self._read(record, generator)
        except FrameReadError as error:
            return SkippedItem(index, error.path, error.reason)
        views, label = self.transform(frames, record.label, generator)
        # views: (crops, clips * T * L, 3, S, S) -> (crops * clips, T * L, 3, S, S)
        crops = views.shape[0]
        per_view = self.num_segments * self.snippet_length
        views = views.reshape(crops * self.num_clips, per_view, *views.shape[-3:])
        return Sample(views, label, index)
