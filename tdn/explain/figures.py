"""Pictures of class activation maps: a PNG grid of the segments and an animated GIF."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..fileio import atomic_write

COLORMAP = "jet"
HEAT_OPACITY = 0.45


def _rgb(frames: torch.Tensor) -> np.ndarray:
    """(K, 3, H, W) uint8 -> (K, H, W, 3) floats in [0, 1]."""
    return frames.permute(0, 2, 3, 1).numpy().astype(np.float32) / 255.0


def overlay(frames: torch.Tensor, cams: torch.Tensor) -> np.ndarray:
    """(K, 3, H, W) uint8 frames under (K, H, W) heat maps in [0, 1] -> (K, H, W, 3) uint8.

    The frames are shown in grey, so that their own colours do not read as heat.
    """
    from matplotlib import colormaps

    heat = colormaps[COLORMAP](cams.clamp(0, 1).numpy())[..., :3]
    grey = _rgb(frames).mean(axis=-1, keepdims=True)
    mixed = (1 - HEAT_OPACITY) * grey + HEAT_OPACITY * heat
    return (mixed * 255).round().clip(0, 255).astype(np.uint8)


def write_grid(path: str | os.PathLike, centre_frames: torch.Tensor, cams: torch.Tensor,
               title: str, panel_titles: Sequence[str]) -> Path:
    """One panel per segment (its centre frame under its heat map), ``title`` above them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = overlay(centre_frames, cams)
    count = len(images)
    columns = min(count, 8)
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.1 * rows + 0.4),
                                squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index < count:
            ax.imshow(images[index])
            ax.set_title(panel_titles[index], fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    try:
        return atomic_write(path, lambda temporary: figure.savefig(temporary, format="png",
                                                                  dpi=80))
    finally:
        plt.close(figure)


def write_animation(path: str | os.PathLike, frames: torch.Tensor, cams: torch.Tensor,
                    frames_per_segment: int, fps: int = 6) -> Path:
    """An animated GIF of every sampled frame under its segment's heat map."""
    from PIL import Image

    per_frame = cams.repeat_interleave(frames_per_segment, dim=0)
    images = [Image.fromarray(image) for image in overlay(frames, per_frame)]

    def write(temporary: str) -> None:
        images[0].save(temporary, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(1000 / fps), loop=0)

    return atomic_write(path, write)
