"""Reading frames: video files (PyAV, or decord when installed) and folders of images (Pillow).

Every reader returns ``uint8`` tensors of shape ``(K, 3, H, W)`` (RGB), one per requested index,
in the requested order (indices may repeat). Failures raise :class:`FrameReadError` carrying the
path and a human-readable reason, which the dataset turns into a skipped item.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Callable, Literal, Sequence

import numpy as np
import torch

DecoderName = Literal["auto", "pyav", "decord"]


class FrameReadError(RuntimeError):
    """A video or frame folder that cannot be read; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def decord_available() -> bool:
    return importlib.util.find_spec("decord") is not None


def resolve_decoder(decoder: DecoderName) -> str:
    """The video decoder to use: ``"pyav"`` or ``"decord"`` (``"auto"``: decord if installed)."""
    if decoder == "auto":
        return "decord" if decord_available() else "pyav"
    if decoder == "decord" and not decord_available():
        raise ValueError("decoder 'decord' requested but decord is not installed")
    if decoder not in ("pyav", "decord"):
        raise ValueError(f"decoder must be 'auto', 'pyav' or 'decord', got {decoder!r}")
    return decoder


def _to_tensor(frames: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------- PyAV
def _pyav_count(container, stream) -> int:
    if stream.frames > 0:
        return int(stream.frames)
    # Containers without a frame count in their header (webm, some mkv): count packets,
    # which demuxes without decoding, then rewind.
    count = sum(1 for packet in container.demux(stream) if packet.size > 0)
    container.seek(0, stream=stream)
    return count


def _pyav_decode(container, stream, path: str, indices: Sequence[int]) -> list[np.ndarray]:
    wanted = set(int(i) for i in indices)
    last_wanted = max(wanted)
    found: dict[int, np.ndarray] = {}
    last_frame = None
    for position, frame in enumerate(container.decode(stream)):
        last_frame = frame
        if position in wanted:
            found[position] = frame.to_ndarray(format="rgb24")
        if position >= last_wanted:
            break
    if last_frame is None:
        raise FrameReadError(path, "no frame could be decoded")
    # Headers may over-count frames: indices past the last decoded frame are clamped to it,
    # the same rule as for indices past the end of the video (docs/math.md §1).
    missing = wanted - found.keys()
    if missing:
        tail = last_frame.to_ndarray(format="rgb24")
        found.update((index, tail) for index in missing)
    return [found[int(i)] for i in indices]


def _pyav_open(path: str):
    import av

    container = av.open(path)
    if not container.streams.video:
        container.close()
        raise FrameReadError(path, "no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


# ----------------------------------------------------------------------------- decord
def _decord_reader(path: str):
    import decord

    return decord.VideoReader(path, num_threads=1)


# ----------------------------------------------------------------------------- public API
def _unreadable(path: str, error: Exception) -> FrameReadError:
    if isinstance(error, FrameReadError):
        return error
    if isinstance(error, FileNotFoundError) or not os.path.isfile(path):
        return FrameReadError(path, "file not found")
    # av.error.*, decord errors, OSError: all mean "this file cannot be decoded"
    return FrameReadError(path, f"{type(error).__name__}: {error}")


def read_video_sampled(
    path: str, choose: Callable[[int], Sequence[int]], backend: DecoderName = "auto",
) -> torch.Tensor:
    """Open ``path`` once, ask ``choose(num_frames)`` which frames to read, and return them as
    ``(K, 3, H, W)`` uint8 RGB. Raises :class:`FrameReadError` when the file cannot be read."""
    backend = resolve_decoder(backend)
    try:
        if backend == "decord":
            reader = _decord_reader(path)
            count = len(reader)
            if count < 1:
                raise FrameReadError(path, "the video has no frames")
            indices = [min(int(i), count - 1) for i in choose(count)]
            if indices:
                frames = reader.get_batch(indices).asnumpy()
                return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
        else:
            container, stream = _pyav_open(path)
            with container:
                count = _pyav_count(container, stream)
                if count < 1:
                    raise FrameReadError(path, "the video has no frames")
                indices = list(choose(count))
                if indices:
                    return _to_tensor(_pyav_decode(container, stream, path, indices))
    except Exception as error:  # PyAV's errors subclass ValueError/OSError: all "unreadable"
        raise _unreadable(path, error) from error
    raise ValueError("choose() selected no frame")


def video_frame_count(path: str, backend: DecoderName = "auto") -> int:
    """Number of frames of a video file (from its header, or by demuxing when absent)."""
    backend = resolve_decoder(backend)
    try:
        if backend == "decord":
            return len(_decord_reader(path))
        container, stream = _pyav_open(path)
        with container:
            return _pyav_count(container, stream)
    except Exception as error:
        raise _unreadable(path, error) from error


def read_video_frames(
    path: str, indices: Sequence[int], backend: DecoderName = "auto",
) -> torch.Tensor:
    """Frames ``indices`` (0-based) of a video file as ``(K, 3, H, W)`` uint8 RGB."""
    if len(indices) == 0:
        raise ValueError("indices must not be empty")
    return read_video_sampled(path, lambda count: indices, backend)


def read_folder_frames(
    folder: str, indices: Sequence[int], image_template: str = "img_{:05d}.jpg",
    first_index: int = 1,
) -> torch.Tensor:
    """Frames ``indices`` (0-based) of a frame folder whose files are
    ``image_template.format(first_index + index)`` (the authors number from 1)."""
    from PIL import Image

    loaded: dict[int, np.ndarray] = {}
    for index in sorted(set(int(i) for i in indices)):
        file = os.path.join(folder, image_template.format(first_index + index))
        try:
            with Image.open(file) as image:
                loaded[index] = np.asarray(image.convert("RGB"))
        except Exception as error:
            raise FrameReadError(folder, f"{os.path.basename(file)}: {type(error).__name__}: {error}") from error
    shapes = {frame.shape for frame in loaded.values()}
    if len(shapes) != 1:
        raise FrameReadError(folder, f"frames of different sizes {sorted(shapes)}")
    return _to_tensor([loaded[int(i)] for i in indices])
