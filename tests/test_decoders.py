"""Every video decoder reads the same frames: PyAV is the reference, torchcodec and decord are
compared with it where they are installed (same frames, pixels within colour-conversion
rounding), and the glue around them is tested everywhere
with stand-ins built on PyAV (so the index handling and the truncation check are covered
even where the optional decoders are absent)."""

import importlib.abc
import sys
import types
from fractions import Fraction

import numpy as np
import pytest
import torch

from tdn.data import decoding
from tdn.data.decoding import FrameReadError, read_video_frames, resolve_decoder, video_frame_count

COUNT, SIZE = 24, 48
INDICES = [0, 23, 7, 7, 12, 1, 22]  # unordered, repeated, both ends


def _frames(count=COUNT, size=SIZE):
    rng = np.random.default_rng(3)
    return [(rng.integers(0, 40, (size, size, 3)) + 8 * i).astype(np.uint8)
            for i in range(count)]


def _write(path, codec, container_format, options=None):
    import av

    with av.open(str(path), "w", format=container_format, options=options or {}) as container:
        stream = container.add_stream(codec, rate=Fraction(12))
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for image in _frames():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """mp4 (H.264 with B-frames), webm (VP9, no frame count in the header), mkv (H.264)."""
    root = tmp_path_factory.mktemp("decoders")
    made = {}
    for name, codec, fmt in (("clip.mp4", "libx264", "mp4"), ("clip.webm", "libvpx-vp9", "webm"),
                             ("clip.mkv", "libx264", "matroska")):
        _write(root / name, codec, fmt, {"movflags": "faststart"} if fmt == "mp4" else None)
        made[name] = root / name
    for name in ("clip.mp4", "clip.webm"):
        data = made[name].read_bytes()
        made[name.replace("clip", "half")] = root / name.replace("clip", "half")
        made[name.replace("clip", "half")].write_bytes(data[: len(data) // 2])
    made["lastcut.mp4"] = root / "lastcut.mp4"
    made["lastcut.mp4"].write_bytes(cut_in_last_packet(made["clip.mp4"]))
    return made


def cut_in_last_packet(path):
    """The file's bytes cut halfway through its last packet: every packet is still counted
    (the mp4 index is at the front), but the last frames do not decode."""
    import av

    with av.open(str(path)) as container:
        position, size = max((p.pos, p.size) for p in container.demux(video=0) if p.size)
    return path.read_bytes()[: position + size // 2]


def _pyav_all(path):
    """Every frame that decodes (unthreaded), up to the first error."""
    import av

    frames = []
    with av.open(str(path)) as container:
        try:
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
        except av.error.FFmpegError:
            pass
    return frames


@pytest.mark.parametrize("name", ["clip.mp4", "clip.webm", "clip.mkv"])
def test_pyav_reads_exactly_the_requested_frames(videos, name):
    every = _pyav_all(videos[name])
    assert len(every) == COUNT == video_frame_count(str(videos[name]), "av")
    frames = read_video_frames(str(videos[name]), INDICES, "av")
    expected = torch.from_numpy(np.stack([every[i] for i in INDICES])).permute(0, 3, 1, 2)
    assert torch.equal(frames, expected)


def test_a_webm_cut_in_half_is_refused_by_its_duration(videos):
    # Matroska headers carry no frame count, but their duration (x the frame rate) stands
    # for one: the cut file still announces all 24 frames' worth of time.
    with pytest.raises(FrameReadError, match="its duration announces about 24 frames"):
        video_frame_count(str(videos["half.webm"]), "av")
    with pytest.raises(FrameReadError, match="truncated video"):
        read_video_frames(str(videos["half.webm"]), [0], "av")


# ----------------------------------------------------------------------------- stand-ins
class _FakeTorchCodecDecoder:
    """torchcodec.decoders.VideoDecoder's surface, decoding with PyAV (unthreaded, stopping
    at the first error). As the real one (0.7.0) does, its length is the packets its scan
    finds, the header's frame count and duration are metadata (Matroska has neither: the
    duration is the container's), and a frame that does not decode raises RuntimeError."""

    def __init__(self, path, seek_mode, dimension_order, num_ffmpeg_threads):
        import av

        assert (seek_mode, dimension_order) == ("exact", "NHWC")
        with av.open(path) as container:
            stream = container.streams.video[0]
            duration = stream.duration and float(stream.duration * stream.time_base)
            self.metadata = types.SimpleNamespace(
                num_frames_from_header=stream.frames or None,
                duration_seconds_from_header=duration or None,
                average_fps_from_header=float(stream.average_rate))
            self.packets = sum(1 for p in container.demux(stream) if p.size)
        self.frames = _pyav_all(path)

    def __len__(self):
        return self.packets

    def _frame(self, index):
        if index >= len(self.frames):
            raise RuntimeError("Could not push packet to decoder: Invalid data found when "
                               "processing input")
        return self.frames[index]

    def get_frame_at(self, index):
        return types.SimpleNamespace(data=torch.from_numpy(self._frame(index)))

    def get_frames_at(self, indices):
        chosen = np.stack([self._frame(i) for i in indices])
        return types.SimpleNamespace(data=torch.from_numpy(chosen))


class _FakeDecordReader:
    """decord.VideoReader's surface: trusts the header's count, as decord does."""

    def __init__(self, path, num_threads):
        import av

        with av.open(path) as container:
            self.count = container.streams.video[0].frames or None
        self.frames = _pyav_all(path)
        self.count = self.count or len(self.frames)

    def __len__(self):
        return self.count

    def get_batch(self, indices):
        return types.SimpleNamespace(asnumpy=lambda: np.stack([self.frames[i] for i in indices]))


@pytest.fixture
def stand_ins(monkeypatch):
    torchcodec = types.ModuleType("torchcodec")
    torchcodec.decoders = types.ModuleType("torchcodec.decoders")
    torchcodec.decoders.VideoDecoder = _FakeTorchCodecDecoder
    decord = types.ModuleType("decord")
    decord.VideoReader = _FakeDecordReader
    monkeypatch.setitem(sys.modules, "torchcodec", torchcodec)
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", torchcodec.decoders)
    monkeypatch.setitem(sys.modules, "decord", decord)
    decoding.decoder_available.cache_clear()
    yield
    decoding.decoder_available.cache_clear()


@pytest.mark.parametrize("decoder", ["torchcodec", "decord"])
@pytest.mark.parametrize("name", ["clip.mp4", "clip.webm"])
def test_the_glue_of_each_decoder_keeps_indices_and_order(videos, stand_ins, decoder, name):
    reference = read_video_frames(str(videos[name]), INDICES, "av")
    assert torch.equal(read_video_frames(str(videos[name]), INDICES, decoder), reference)
    assert video_frame_count(str(videos[name]), decoder) == COUNT


@pytest.mark.parametrize("decoder", ["torchcodec", "decord"])
@pytest.mark.parametrize("name", ["half.mp4", "half.webm"])
def test_every_decoder_refuses_a_truncated_video(videos, stand_ins, decoder, name):
    # half.webm has no frame count: its duration stands for one, with every decoder
    with pytest.raises(FrameReadError, match="truncated video"):
        read_video_frames(str(videos[name]), [0, 1], decoder)
    with pytest.raises(FrameReadError, match="truncated video"):
        video_frame_count(str(videos[name]), decoder)


def test_torchcodec_glue_reports_a_frame_that_does_not_decode(videos, stand_ins):
    # All 24 packets are there (the last one cut short), so the count passes; asking for the
    # last frames is a truncated video naming the first requested frame that fails.
    path = str(videos["lastcut.mp4"])
    assert video_frame_count(path, "torchcodec") == COUNT
    assert torch.equal(read_video_frames(path, [0, 5], "torchcodec"),
                       read_video_frames(path, [0, 5], "av"))
    with pytest.raises(FrameReadError, match=r"truncated video: the container announces 24 "
                                             r"frames but frame \d+ does not decode"):
        read_video_frames(path, list(range(COUNT)), "torchcodec")
    with pytest.raises(FrameReadError, match=r"truncated video: .* but only \d+ decode"):
        read_video_frames(path, list(range(COUNT)), "av")


def test_auto_prefers_torchcodec_when_it_loads(stand_ins):
    assert resolve_decoder("auto") == "torchcodec"


def test_auto_falls_back_to_pyav_and_says_so_once(monkeypatch):
    said = []
    # the module's logger replaced, not captured: other tests reconfigure logging
    monkeypatch.setattr(decoding, "log", types.SimpleNamespace(info=lambda *a: said.append(a)))
    monkeypatch.setattr(decoding, "decoder_available", lambda name: name == "av")
    decoding._say_auto_fallback.cache_clear()
    assert [resolve_decoder("auto") for _ in range(3)] == ["av"] * 3
    assert len(said) == 1 and "torchcodec is not available, using PyAV" in said[0][0]


class _LibraryThatDoesNotLoad(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith("torchcodec"):
            raise OSError("libnvrtc.so.13: cannot open shared object file")
        return None


def test_a_decoder_that_does_not_load_counts_as_absent(monkeypatch):
    # torchcodec's PyPI wheels are CUDA builds: beside a CPU torch, importing them raises
    # OSError (a shared library that does not load), which must mean "not available".
    for name in [m for m in sys.modules if m.startswith("torchcodec")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_LibraryThatDoesNotLoad(), *sys.meta_path])
    decoding.decoder_available.cache_clear()
    try:
        assert not decoding.decoder_available("torchcodec")
        with pytest.raises(ValueError, match="use --decoder av"):
            resolve_decoder("torchcodec")
    finally:
        decoding.decoder_available.cache_clear()


# ----------------------------------------------------------------------------- the real ones
def _real(name):
    decoding.decoder_available.cache_clear()
    if not decoding.decoder_available(name):
        pytest.skip(f"{name} is not installed (or does not load with this torch)")


# Colour conversion (YUV 4:2:0 -> RGB) may round or interpolate chroma differently from
# PyAV's; the frames must be the same ones, and their pixels close.
MEAN_ABS_TOLERANCE = 2.0  # grey levels, over a frame


@pytest.mark.parametrize("decoder", ["torchcodec", "decord"])
@pytest.mark.parametrize("name", ["clip.mp4", "clip.webm", "clip.mkv"])
def test_installed_decoders_read_pyav_s_frames(videos, decoder, name):
    _real(decoder)
    every = torch.from_numpy(np.stack(_pyav_all(videos[name]))).permute(0, 3, 1, 2).float()
    frames = read_video_frames(str(videos[name]), INDICES, decoder).float()
    assert frames.shape == (len(INDICES), *every.shape[1:])
    distance = (frames[:, None] - every[None]).abs().mean(dim=(2, 3, 4))  # (requested, all)
    assert distance.argmin(dim=1).tolist() == INDICES  # each is the frame asked for
    assert distance.min(dim=1).values.max() <= MEAN_ABS_TOLERANCE


@pytest.mark.parametrize("decoder", ["torchcodec", "decord"])
def test_installed_decoders_refuse_a_truncated_video(videos, decoder):
    _real(decoder)
    with pytest.raises(FrameReadError, match="truncated video"):
        video_frame_count(str(videos["half.mp4"]), decoder)

