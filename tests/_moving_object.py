"""A motion-only explanation fixture: a textured square sliding over a static textured
background, with the square's mask known in every frame.

Both textures are drawn from the same random field, so a single frame does not show where the
square is: only the motion does. A model trained to tell the direction of the slide has to
look at the square, and its heat maps can be scored against the masks.
"""

from __future__ import annotations

import numpy as np
import torch

from tdn.data.synthetic import periodic_texture

# A third class, the square standing still, makes both directions need evidence of their own
# (with two classes a model may detect one direction and call everything else the other).
CLASSES = ("moving_left", "moving_right", "standing_still")


def moving_object_clip(label: int, num_frames: int, size: int, rng: np.random.Generator,
                       object_size: int, speed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(frames (K, S, S, 3) uint8, masks (K, S, S) bool)`` of one clip of class ``label``
    (an index into :data:`CLASSES`)."""
    background = periodic_texture(size, rng, smoothness=2.0)
    patch = periodic_texture(size, rng, smoothness=2.0)[:object_size, :object_size]
    travel = speed * (num_frames - 1)
    top = int(rng.integers(0, size - object_size + 1))
    left0 = int(rng.integers(0, size - object_size - travel + 1))
    step = {0: -speed, 1: speed, 2: 0}[label]
    start = left0 + travel if label == 0 else left0
    frames = np.repeat(background[None], num_frames, axis=0)
    masks = np.zeros((num_frames, size, size), dtype=bool)
    for k in range(num_frames):
        left = start + step * k
        frames[k, top:top + object_size, left:left + object_size] = patch
        masks[k, top:top + object_size, left:left + object_size] = True
    return frames, masks


def normalised_clip(frames: np.ndarray) -> torch.Tensor:
    """(K, S, S, 3) uint8 -> (K*3, S, S) float, normalised as the data pipeline does."""
    from tdn.data import normalize_frames

    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2)
    return normalize_frames(tensor).reshape(-1, *frames.shape[1:3])


def training_batch(count: int, num_frames: int, size: int, rng: np.random.Generator,
                   object_size: int, speed: int) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(count) % len(CLASSES)
    clips = [normalised_clip(moving_object_clip(int(y), num_frames, size, rng, object_size,
                                                speed)[0]) for y in labels]
    return torch.stack(clips), labels
