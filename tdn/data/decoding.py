"""Reading frames: video files (PyAV, torchcodec or decord) and folders of images (Pillow).

Every reader returns ``uint8`` tensors of shape ``(K, 3, H, W)`` (RGB), one per requested index,
in the requested order (indices may repeat). Failures raise :class:`FrameReadError` carrying the
path and a human-readable reason, which the dataset turns into a skipped item.

A video is *complete* when it holds every frame its container announces. One that holds fewer
(a download or copy cut short; with the index at the front, ``movflags=faststart``, such a file
still opens) is corrupt and raises :class:`FrameReadError`, whichever decoder reads it: frames
are never invented by repeating the last one that decoded. Threaded decoders may swallow the
codec's error at the cut, so the check counts frames and packets instead of waiting for one.
Containers without a frame count (webm, mkv) announce a duration, which stands for one.

Decoders (``--decoder``): ``av`` (PyAV, always available with the ``video`` extra),
``torchcodec`` and ``decord`` (optional), ``auto`` (torchcodec when it imports, else PyAV,
saying so once). All of them read the frames at exactly the requested indices; their pixels
may differ from PyAV's by the rounding of the YUV -> RGB conversion (tests/test_decoders.py:
the same frames, within 2 grey levels on average; torchcodec 0.7.0 built on FFmpeg 5.1 gives
PyAV's pixels exactly, tests/test_torchcodec.py).
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Callable, Literal, Sequence

import numpy as np
import torch

DecoderName = Literal["auto", "av", "torchcodec", "decord"]
DECODERS = ("auto", "av", "torchcodec", "decord")
_ALIASES = {"pyav": "av"}  # the name earlier versions used

log = logging.getLogger("tdn")


class FrameReadError(RuntimeError):
    """A video or frame folder that cannot be read; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


# ----------------------------------------------------------------------------- choosing one
@functools.lru_cache(maxsize=None)
def decoder_available(name: str) -> bool:
    """Whether the optional decoder ``name`` imports. An import, not a lookup: torchcodec's
    wheels load FFmpeg and torch libraries when imported, and fail there when those do not
    match (e.g. a CUDA build of torchcodec beside a CPU build of torch)."""
    module = {"av": "av", "torchcodec": "torchcodec.decoders", "decord": "decord"}[name]
    try:
        __import__(module)
    except Exception:  # ImportError, or OSError from a shared library that does not load
        return False
    return True


def decord_available() -> bool:
    return decoder_available("decord")


@functools.lru_cache(maxsize=None)
def _say_auto_fallback() -> None:
    log.info("video decoder: torchcodec is not available, using PyAV (--decoder av)")


def resolve_decoder(decoder: str) -> str:
    """The decoder that ``decoder`` stands for: ``"av"``, ``"torchcodec"`` or ``"decord"``.

    ``"auto"`` picks torchcodec when it imports, else PyAV (logged once per process). Naming
    an optional decoder that is not installed is an error, not a silent fallback.
    """
    name = _ALIASES.get(decoder, decoder)
    if name not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if name == "auto":
        if decoder_available("torchcodec"):
            return "torchcodec"
        _say_auto_fallback()
        return "av"
    if name != "av" and not decoder_available(name):
        raise ValueError(f"decoder {name!r} requested but {name} is not installed (or does not "
                         f"load with this torch); use --decoder av")
    return name


# ----------------------------------------------------------------------------- PyAV
def _rgb(frame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")


def _truncated(announced: int, present: int, what: str) -> str:
    return (f"truncated video: the container announces {announced} frames but only "
            f"{present} {what}")


class _PyAVVideo:
    """One open container. Frames are decoded in order from the start (exact at any index,
    and no seek to trust); the packets after the last wanted frame are demuxed, not decoded,
    to check that the file is complete."""

    def __init__(self, path: str):
        import av

        self.path = path
        self.container = av.open(path)
        if not self.container.streams.video:
            self.container.close()
            raise FrameReadError(path, "no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.announced = int(self.stream.frames)
        if self.announced <= 0:
            # No frame count in the header (webm, mkv): count packets, then rewind.
            self.announced = self._count_packets()
            try:
                self._check_duration()
            except FrameReadError:
                self.container.close()
                raise
            self.container.seek(0, stream=self.stream)

    def _count_packets(self) -> int:
        return sum(1 for packet in self.container.demux(self.stream) if packet.size > 0)

    # Without a frame count, the header's duration times the frame rate stands for one. Frame
    # rates may vary (a webm's is estimated from its first frames): only a file holding under
    # this fraction of the frames its duration implies is called truncated.
    DURATION_SLACK = 0.9

    def _check_duration(self) -> None:
        duration, rate = self.container.duration, self.stream.average_rate
        if not duration or not rate:
            return
        implied = round(duration / 1_000_000 * float(rate))
        if self.announced < self.DURATION_SLACK * implied:
            raise FrameReadError(self.path, f"truncated video: its duration announces about "
                                            f"{implied} frames but only {self.announced} are "
                                            f"stored")

    def close(self) -> None:
        self.container.close()

    def check_complete(self) -> None:
        packets = self._count_packets()
        if packets < self.announced:
            raise FrameReadError(self.path, _truncated(self.announced, packets, "are stored"))

    def read(self, indices: Sequence[int]) -> list[np.ndarray]:
        wanted = set(indices)
        last_wanted = max(wanted)
        found: dict[int, np.ndarray] = {}
        position = packets = 0
        # demux() ends with an empty packet per stream, whose decode() flushes the frames a
        # threaded or B-frame decoder still holds.
        for packet in self.container.demux(self.stream):
            packets += packet.size > 0
            if position > last_wanted and packet.size > 0:
                continue  # only counting from here on
            for frame in packet.decode():
                if position in wanted:
                    found[position] = _rgb(frame)
                position += 1
        if packets < self.announced:
            raise FrameReadError(self.path, _truncated(self.announced, packets, "are stored"))
        if position <= last_wanted:
            raise FrameReadError(self.path, _truncated(self.announced, position, "decode"))
        return [found[i] for i in indices]


# ----------------------------------------------------------------------------- torchcodec
def _torchcodec_container_duration(decoder, path: str) -> float | None:
    """The container's duration in seconds (Matroska keeps it there, not in the stream).
    torchcodec's container metadata is not public API (``torchcodec._core``, checked with
    0.7.0): where it is missing, PyAV reads the header instead (no decoding)."""
    try:
        return _container_duration_from_torchcodec(decoder)
    except Exception:
        pass
    try:
        import av

        with av.open(path) as container:
            return container.duration / 1_000_000 if container.duration else None
    except Exception:
        return None


def _container_duration_from_torchcodec(decoder) -> float | None:
    from torchcodec import _core

    return _core.get_container_metadata(decoder._decoder).duration_seconds_from_header


class _TorchCodecVideo:
    """torchcodec's ``VideoDecoder`` in exact seek mode: it scans the file once (demuxing, no
    decoding), so its frame count is the number of packets present, which is compared with
    the header's. Checked against the real torchcodec 0.7.0 (built on CPU, FFmpeg 5.1):

    * an mp4 cut short announces its full count in the header: fewer frames scanned is
      refused up front;
    * Matroska (webm, mkv) has no frame count: as with PyAV, the duration times the frame
      rate stands for one (``_PyAVVideo.DURATION_SLACK``); torchcodec's scan alone would
      accept the cut file, and its ``len()`` would just be shorter;
    * a cut through the last packets leaves them counted but undecodable: ``get_frames_at``
      raises (``RuntimeError: Could not push packet to decoder``) once a requested frame
      needs them, which is reported as a truncated video naming the first such frame;
    * a file without a video stream (``ValueError: No valid stream found``) is reported as
      such.
    """

    def __init__(self, path: str):
        from torchcodec.decoders import VideoDecoder

        self.path = path
        try:
            self.decoder = VideoDecoder(path, seek_mode="exact", dimension_order="NHWC",
                                        num_ffmpeg_threads=1)
        except ValueError as error:
            if "No valid stream" in str(error) or "best video stream" in str(error):
                raise FrameReadError(path, "no video stream") from error
            raise
        metadata = self.decoder.metadata
        present = len(self.decoder)
        header = getattr(metadata, "num_frames_from_header", None)
        self.announced = max(present, int(header or 0))
        self.present = present
        if not header:
            self._check_duration(metadata)

    def _check_duration(self, metadata) -> None:
        duration = (getattr(metadata, "duration_seconds_from_header", None)
                    or _torchcodec_container_duration(self.decoder, self.path))
        rate = getattr(metadata, "average_fps_from_header", None)
        if not duration or not rate:
            return
        implied = round(duration * float(rate))
        if self.present < _PyAVVideo.DURATION_SLACK * implied:
            raise FrameReadError(self.path, f"truncated video: its duration announces about "
                                            f"{implied} frames but only {self.present} are "
                                            f"stored")

    def close(self) -> None:
        pass

    def check_complete(self) -> None:
        if self.present < self.announced:
            raise FrameReadError(self.path, _truncated(self.announced, self.present, "are stored"))

    def _first_undecodable(self, indices: Sequence[int]) -> int | None:
        """The first of ``indices`` that does not decode, in a fresh decoder (the one that
        failed may be left mid-stream)."""
        from torchcodec.decoders import VideoDecoder

        try:
            decoder = VideoDecoder(self.path, seek_mode="exact", dimension_order="NHWC",
                                   num_ffmpeg_threads=1)
        except Exception:
            return None
        for index in sorted(set(indices)):
            try:
                decoder.get_frame_at(index)
            except RuntimeError:
                return index
        return None

    def read(self, indices: Sequence[int]) -> list[np.ndarray]:
        self.check_complete()
        try:
            frames = self.decoder.get_frames_at(list(indices)).data.numpy()
        except RuntimeError as error:
            first = self._first_undecodable(indices)
            where = (f"frame {first} does not decode" if first is not None
                     else "not every frame decodes")
            raise FrameReadError(self.path, f"truncated video: the container announces "
                                            f"{self.announced} frames but {where} "
                                            f"({type(error).__name__}: {error})") from error
        return list(frames)


# ----------------------------------------------------------------------------- decord
class _DecordVideo:
    """decord reads frames by index but takes the header's count on trust: the packets are
    counted with PyAV's demuxer (no decoding) to catch a truncated file."""

    def __init__(self, path: str):
        import decord

        self.path = path
        self.reader = decord.VideoReader(path, num_threads=1)
        self.announced = len(self.reader)

    def close(self) -> None:
        pass

    def check_complete(self) -> None:
        probe = _PyAVVideo(self.path)
        try:
            probe.check_complete()
        finally:
            probe.close()

    def read(self, indices: Sequence[int]) -> list[np.ndarray]:
        self.check_complete()
        return list(self.reader.get_batch(list(indices)).asnumpy())


_BACKENDS = {"av": _PyAVVideo, "torchcodec": _TorchCodecVideo, "decord": _DecordVideo}


# ----------------------------------------------------------------------------- public API
def _to_tensor(frames: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def _unreadable(path: str, error: Exception) -> FrameReadError:
    if isinstance(error, FrameReadError):
        return error
    if isinstance(error, IsADirectoryError) or os.path.isdir(path):
        return FrameReadError(path, "is a directory, not a video file")
    if isinstance(error, FileNotFoundError) or not os.path.isfile(path):
        return FrameReadError(path, "file not found")
    # av.error.*, torchcodec's RuntimeError, decord errors, OSError: "cannot be decoded"
    return FrameReadError(path, f"{type(error).__name__}: {error}")


def _open(path: str, decoder: str):
    video = _BACKENDS[resolve_decoder(decoder)](path)
    if video.announced < 1:
        video.close()
        raise FrameReadError(path, "the video has no frames")
    return video


def read_video_sampled(
    path: str, choose: Callable[[int], Sequence[int]], backend: str = "auto",
) -> torch.Tensor:
    """Open ``path`` once, ask ``choose(num_frames)`` which frames to read, and return them as
    ``(K, 3, H, W)`` uint8 RGB. Indices past the last frame read the last frame (docs/math.md
    §1). Raises :class:`FrameReadError` when the file cannot be read or is truncated."""
    resolve_decoder(backend)  # a bad decoder name is the caller's error, not the file's
    try:
        video = _open(path, backend)
    except Exception as error:  # PyAV's errors subclass ValueError/OSError: all "unreadable"
        raise _unreadable(path, error) from error
    try:
        indices = [min(max(int(i), 0), video.announced - 1) for i in choose(video.announced)]
        if not indices:
            raise ValueError("choose() selected no frame")
        try:
            return _to_tensor(video.read(indices))
        except Exception as error:
            raise _unreadable(path, error) from error
    finally:
        video.close()


def video_frame_count(path: str, backend: str = "auto") -> int:
    """The number of frames of a video file, after checking that the file holds them all.

    The probe for indexing and benchmarks: it demuxes the whole file (cheap: nothing is
    decoded) and raises :class:`FrameReadError` for a file that is missing, unreadable,
    empty or truncated.
    """
    resolve_decoder(backend)
    try:
        video = _open(path, backend)
        try:
            video.check_complete()
            return video.announced
        finally:
            video.close()
    except Exception as error:
        raise _unreadable(path, error) from error


def read_video_frames(path: str, indices: Sequence[int], backend: str = "auto") -> torch.Tensor:
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
