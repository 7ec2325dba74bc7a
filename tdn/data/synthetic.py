"""A synthetic motion dataset whose classes only differ in motion.

Every video shows a random, smooth, periodic colour texture translating at constant speed;
the class is the direction (left, right, up, down). Because the texture is statistically
stationary and a translated periodic texture is just another sample of the same random field,
any single frame has exactly the same distribution whatever the class: a model that looks at
frames one at a time (TSN averages per-frame scores) can do no better than chance, while one
that sees frame differences (TDN's S-TDM and L-TDM) can read the direction.

Horizontal flips swap "left" and "right": train with ``--flip-label-swaps 0:1`` or no flip.
"""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np

from ..fileio import atomic_write, atomic_write_text

DIRECTIONS = {  # class name -> (dy, dx) per unit of speed
    "moving_left": (0, -1),
    "moving_right": (0, 1),
    "moving_up": (-1, 0),
    "moving_down": (1, 0),
}


def periodic_texture(size: int, rng: np.random.Generator, smoothness: float) -> np.ndarray:
    """A (size, size, 3) uint8 texture that tiles seamlessly: white noise low-passed with a
    Gaussian in the Fourier domain (hence periodic), each channel stretched to 0..255."""
    noise = rng.standard_normal((3, size, size))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    gain = np.exp(-(fy ** 2 + fx ** 2) * (2 * np.pi * smoothness) ** 2 / 2)
    smooth = np.fft.irfft2(np.fft.rfft2(noise) * gain, s=(size, size))
    low = smooth.min(axis=(1, 2), keepdims=True)
    high = smooth.max(axis=(1, 2), keepdims=True)
    scaled = (smooth - low) / np.maximum(high - low, 1e-8) * 255.0
    return np.ascontiguousarray(scaled.transpose(1, 2, 0).round().astype(np.uint8))


def motion_clip(direction: tuple[int, int], num_frames: int, size: int, speed: int,
                rng: np.random.Generator, smoothness: float = 2.0) -> np.ndarray:
    """(num_frames, size, size, 3) uint8: a texture rolled by ``speed`` pixels per frame."""
    texture = periodic_texture(size, rng, smoothness)
    phase = rng.integers(0, size, size=2)
    dy, dx = direction
    return np.stack([
        np.roll(texture, (int(phase[0] + dy * speed * t), int(phase[1] + dx * speed * t)),
                axis=(0, 1))
        for t in range(num_frames)
    ])


def write_mp4(path: str, frames: np.ndarray, fps: int = 12) -> None:
    """Encode (K, H, W, 3) uint8 frames as H.264 (near-lossless), written atomically."""
    import av

    def encode(temporary: str) -> None:
        # The temporary's name does not end in .mp4, so the container format is named.
        with av.open(temporary, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps))
            stream.height, stream.width = frames.shape[1:3]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "10", "preset": "veryfast"}
            for image in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    atomic_write(path, encode)


def _write_text(path: str, lines: list[str]) -> None:
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def write_motion_dataset(output: str, train_per_class: int = 48, val_per_class: int = 16,
                         num_frames: int = 24, size: int = 64, speed: int = 2, seed: int = 0,
                         num_classes: int = 4) -> dict[str, str]:
    """Write ``videos/*.mp4``, ``train.txt``, ``val.txt`` (``path label``, relative to
    ``output``) and ``classes.txt``. Returns the paths of the three text files."""
    if not 2 <= num_classes <= len(DIRECTIONS):
        raise ValueError(f"num_classes must be in [2, {len(DIRECTIONS)}], got {num_classes}")
    if size < 16 or size % 2:
        raise ValueError(f"size must be even and >= 16, got {size}")
    if num_frames < 1 or speed < 1 or train_per_class < 1 or val_per_class < 1:
        raise ValueError("num_frames, speed, train_per_class and val_per_class must be >= 1")
    names = list(DIRECTIONS)[:num_classes]
    os.makedirs(os.path.join(output, "videos"), exist_ok=True)
    rng = np.random.default_rng(seed)
    lists: dict[str, list[str]] = {"train": [], "val": []}
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for item in range(per_class):
            for label, name in enumerate(names):
                relative = os.path.join("videos", f"{split}_{name}_{item:04d}.mp4")
                clip = motion_clip(DIRECTIONS[name], num_frames, size, speed, rng)
                write_mp4(os.path.join(output, relative), clip)
                lists[split].append(f"{relative} {label}")
    paths = {split: os.path.join(output, f"{split}.txt") for split in lists}
    for split, lines in lists.items():
        _write_text(paths[split], lines)
    paths["classes"] = os.path.join(output, "classes.txt")
    _write_text(paths["classes"], names)
    return paths
