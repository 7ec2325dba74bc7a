"""Where a video model looks: per-segment Grad-CAM / Grad-CAM++ heat maps and their pictures.

>>> import tdn
>>> from tdn.explain import explain_video
>>> model = tdn.load_model("best.safetensors")
>>> result = explain_video(model, "clip.mp4", "explain_out/", input_size=224)
>>> result.top          # [(class index, name, probability), ...]; explain_out/ has the files

:func:`class_activation_maps` works on clip tensors directly (any batch of N clips).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..fileio import atomic_write
from .cam import METHODS, CamResult, class_activation_maps, default_layer
from .clip_input import FRAMES_PER_SNIPPET, SampledClip, sample_clip
from .figures import write_animation, write_grid

__all__ = ["METHODS", "CamResult", "Explanation", "class_activation_maps", "default_layer",
           "explain_video", "resolve_class", "sample_clip"]


@dataclass
class Explanation:
    """What :func:`explain_video` computed and wrote."""

    cams: torch.Tensor  # (T, S, S) heat maps in [0, 1], one per segment
    class_index: int
    class_name: str
    score: float  # softmax probability of the explained class
    top: list[tuple[int, str, float]]  # the top-k classes: (index, name, probability)
    sample: SampledClip
    files: dict[str, Path]  # "png", "gif", "npy" -> path
    layer: str
    method: str


def resolve_class(value: str | int | None, class_names: Sequence[str] | None,
                  num_classes: int) -> int | None:
    """A class given as an index or a name (``--class``) -> its index; None stays None."""
    if value is None:
        return None
    if isinstance(value, str) and class_names and value in class_names:
        return list(class_names).index(value)
    try:
        index = int(value)
    except (TypeError, ValueError):
        known = f"; known names: {', '.join(list(class_names)[:10])}" if class_names else ""
        raise ValueError(f"class {value!r} is neither a class index nor a class name{known}")
    if not 0 <= index < num_classes:
        raise ValueError(f"class index {index} is out of range: the model has {num_classes} "
                         "classes")
    return index


def _write_array(path: Path, array: np.ndarray) -> Path:
    def write(temporary: str) -> None:
        with open(temporary, "wb") as handle:  # a file object: np.save would add ".npy"
            np.save(handle, array)

    return atomic_write(path, write)


def _name(index: int, class_names: Sequence[str] | None) -> str:
    return class_names[index] if class_names and index < len(class_names) else str(index)


def explain_video(model: nn.Module, video: str, output: str | os.PathLike, *,
                  input_size: int = 224, target: str | int | None = None,
                  layer: str | None = None, method: str = "gradcam",
                  class_names: Sequence[str] | None = None, topk: int = 5,
                  decoder: str = "auto") -> Explanation:
    """Heat maps of ``video`` for its predicted class (or ``target``, an index or a name),
    written to ``output``: ``explain.png`` (the segments' centre frames under their maps),
    ``explain.gif`` (every sampled frame) and ``cam.npy`` ((T, S, S) float32)."""
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    num_classes = int(model.num_classes)
    class_index = resolve_class(target, class_names, num_classes)
    sample = sample_clip(video, model.num_segments, input_size, decoder)
    result = class_activation_maps(model, sample.clip, class_index, layer, method)
    probabilities = result.logits[0].float().softmax(dim=0)
    chosen = int(result.classes[0])
    values, indices = probabilities.topk(min(topk, num_classes))
    top = [(int(i), _name(int(i), class_names), float(v))
           for v, i in zip(values.tolist(), indices.tolist())]
    cams = result.cams[0]
    output = Path(output)
    title = (f"{_name(chosen, class_names)} (p={float(probabilities[chosen]):.2f})\n"
             f"{result.method} on {result.layer}")
    panels = [f"segment {t + 1}" for t in range(len(cams))]
    files = {
        "png": write_grid(output / "explain.png", sample.centre_frames(), cams, title, panels),
        "gif": write_animation(output / "explain.gif", sample.frames, cams, FRAMES_PER_SNIPPET),
        "npy": _write_array(output / "cam.npy", cams.numpy().astype(np.float32)),
    }
    return Explanation(cams, chosen, _name(chosen, class_names), float(probabilities[chosen]),
                       top, sample, files, result.layer, result.method)
