"""Augmentations on ``uint8`` frame tensors ``(K, 3, H, W)`` (all frames of a sample at once,
so every frame of a video gets the same crop and flip).

A transform is called as ``transform(frames, label, generator)`` and returns
``(views, label)`` with ``views`` of shape ``(V, K, 3, S, S)``: ``V = 1`` for training and
centre-crop evaluation, ``V = 3`` for three-crop testing. Randomness comes only from the
``generator`` argument, so a sample's augmentation is reproducible from its seed.

Normalisation to float is a separate step (:func:`normalize_frames`), done by the engine after
the uint8 batch reached its device: four times fewer bytes to collate, pin and copy.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from .recipe import (IMAGENET_MEAN, IMAGENET_STD, MULTI_SCALE_CROP_SCALES,
                     SOMETHING_FLIP_LABEL_SWAPS)



def _check_frames(frames: torch.Tensor) -> None:
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(
            f"frames must be a uint8 tensor (K, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")


def _randint(high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(high, (1,), generator=generator).item())


def resize(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize with antialiasing (like PIL's), staying in uint8."""
    if frames.shape[-2:] == (height, width):
        return frames
    return F.interpolate(frames, size=(height, width), mode="bilinear", align_corners=False,
                         antialias=True)


def resize_short_side(frames: torch.Tensor, size: int) -> torch.Tensor:
    height, width = frames.shape[-2:]
    if height <= width:
        return resize(frames, size, max(1, round(width * size / height)))
    return resize(frames, max(1, round(height * size / width)), size)


def crop(frames: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    return frames[..., top:top + height, left:left + width]


class MultiScaleCrop:
    """TSN's multi-scale crop: a crop whose sides are each one of ``scales`` x the short side
    (aspect distortion limited to neighbouring scales), placed at one of 13 fixed positions
    (corners, centre, edge midpoints, quarter points), then resized to ``size`` x ``size``."""

    def __init__(self, size: int, scales: Sequence[float] = MULTI_SCALE_CROP_SCALES,
                 max_distort: int = 1):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        if not scales or any(not 0 < s <= 1 for s in scales):
            raise ValueError(f"scales must be in (0, 1], got {scales}")
        self.size = size
        self.scales = tuple(scales)
        self.max_distort = max_distort

    def crop_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Allowed ``(crop_h, crop_w)`` pairs for an image of this size."""
        base = min(height, width)
        # sides within 3 pixels of the target snap to it (saves a resize, as TSN does)
        sides = [self.size if abs(int(base * s) - self.size) < 3 else int(base * s)
                 for s in self.scales]
        sides = [max(1, min(side, base)) for side in sides]
        return [(h, w) for i, h in enumerate(sides) for j, w in enumerate(sides)
                if abs(i - j) <= self.max_distort]

    @staticmethod
    def positions(height: int, width: int, crop_h: int, crop_w: int) -> list[tuple[int, int]]:
        """The 13 fixed ``(top, left)`` positions of TSN's "more fixed crops"."""
        h_step, w_step = (height - crop_h) // 4, (width - crop_w) // 4
        grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2),  # corners and centre
                (2, 0), (2, 4), (4, 2), (0, 2),          # edge midpoints
                (1, 1), (1, 3), (3, 1), (3, 3)]          # quarter points
        return [(r * h_step, c * w_step) for r, c in grid]

    def __call__(self, frames: torch.Tensor, generator: torch.Generator | None = None):
        height, width = frames.shape[-2:]
        sizes = self.crop_sizes(height, width)
        crop_h, crop_w = sizes[_randint(len(sizes), generator)]
        places = self.positions(height, width, crop_h, crop_w)
        top, left = places[_randint(len(places), generator)]
        return resize(crop(frames, top, left, crop_h, crop_w), self.size, self.size)


class TrainTransform:
    """Multi-scale crop, then (optionally) a horizontal flip with probability 1/2 that swaps
    the labels listed in ``flip_label_swaps`` (direction-dependent classes)."""

    def __init__(self, size: int, scales: Sequence[float] = MULTI_SCALE_CROP_SCALES,
                 flip: bool = True, flip_label_swaps: Mapping[int, int] | None = None):
        self.crop = MultiScaleCrop(size, scales)
        self.flip = flip
        self.flip_label_swaps = dict(flip_label_swaps or {})
        for source, target in self.flip_label_swaps.items():
            if self.flip_label_swaps.get(target) != source:
                raise ValueError(f"flip_label_swaps must be symmetric: {source}->{target} "
                                 f"has no {target}->{source}")

    def __call__(self, frames: torch.Tensor, label: int, generator: torch.Generator | None = None):
        _check_frames(frames)
        out = self.crop(frames, generator)
        if self.flip and _randint(2, generator) == 1:
            out = out.flip(-1)
            label = self.flip_label_swaps.get(label, label)
        return out.contiguous().unsqueeze(0), label


class EvalTransform:
    """Resize the short side to ``scale_size``, then one centre crop or three crops of
    ``size`` x ``size`` (start, centre and end of the long side, centred on the short one)."""

    def __init__(self, size: int, scale_size: int | None = None, num_crops: int = 1):
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = size
        self.scale_size = scale_size if scale_size is not None else default_scale_size(size)
        if self.scale_size < size:
            raise ValueError(f"scale_size ({self.scale_size}) must be >= size ({size})")
        self.num_crops = num_crops

    def crop_boxes(self, height: int, width: int) -> list[tuple[int, int]]:
        size = self.size
        centre = ((height - size) // 2, (width - size) // 2)
        if self.num_crops == 1:
            return [centre]
        if width >= height:
            return [(centre[0], 0), centre, (centre[0], width - size)]
        return [(0, centre[1]), centre, (height - size, centre[1])]

    def __call__(self, frames: torch.Tensor, label: int, generator: torch.Generator | None = None):
        _check_frames(frames)
        scaled = resize_short_side(frames, self.scale_size)
        height, width = scaled.shape[-2:]
        views = [crop(scaled, top, left, self.size, self.size)
                 for top, left in self.crop_boxes(height, width)]
        return torch.stack(views).contiguous(), label


def default_scale_size(size: int) -> int:
    """Short side before cropping at evaluation: 256 for 224, same ratio otherwise."""
    return size * 256 // 224


def normalize_frames(
    frames: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD, dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 frames ``(..., 3, H, W)`` -> float ``(x / 255 - mean) / std``."""
    mean_t = torch.tensor(mean, dtype=dtype, device=frames.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=dtype, device=frames.device).view(3, 1, 1)
    return (frames.to(dtype) / 255.0 - mean_t) / std_t


def parse_label_swaps(text: str) -> dict[int, int]:
    """``"86:87,93:94"`` -> symmetric mapping ``{86: 87, 87: 86, 93: 94, 94: 93}``;
    ``"something"`` -> the Something-Something swaps; ``""`` -> no swaps."""
    text = text.strip()
    if not text:
        return {}
    if text.lower() == "something":
        return dict(SOMETHING_FLIP_LABEL_SWAPS)
    swaps: dict[int, int] = {}
    for pair in text.split(","):
        try:
            a, b = (int(v) for v in pair.split(":"))
        except ValueError:
            raise ValueError(f"flip label swaps must look like '86:87,93:94', got {text!r}") from None
        swaps[a], swaps[b] = b, a
    return swaps
