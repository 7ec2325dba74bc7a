"""The real torchcodec, where it is installed (CI does not have it: its PyPI wheels are CUDA
builds that do not load beside a CPU torch; scripts/build_torchcodec_cpu.sh builds one from
source). What it showed, checked with torchcodec 0.7.0 built on CPU against FFmpeg 5.1 and
PyAV 18.1 (which bundles its own FFmpeg):

* its frames are PyAV's, pixel for pixel (same YUV -> RGB conversion), at any index order;
* its exact-mode scan counts packets, not frames: a Matroska file cut short has a shorter
  ``len()`` and no header count to compare with, so its duration must stand for one;
* a cut through the last packets leaves them counted, and decoding them raises
  ``RuntimeError`` — a truncated video, as with PyAV;
* a file without a video stream raises ``ValueError`` ("No valid stream found").

Every test here skips cleanly when torchcodec does not import.
"""


import numpy as np
import pytest
import torch

from tdn.data import decoding
from tdn.data.decoding import FrameReadError, read_video_frames, resolve_decoder, video_frame_count

from test_decoders import COUNT, INDICES, _pyav_all, _write, cut_in_last_packet


@pytest.fixture(autouse=True)
def real_torchcodec():
    decoding.decoder_available.cache_clear()
    if not decoding.decoder_available("torchcodec"):
        pytest.skip("torchcodec is not installed (or does not load with this torch)")
    yield
    decoding.decoder_available.cache_clear()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchcodec")
    made = {}
    for name, codec, fmt in (("clip.mp4", "libx264", "mp4"), ("clip.webm", "libvpx-vp9", "webm"),
                             ("clip.mkv", "libx264", "matroska")):
        _write(root / name, codec, fmt, {"movflags": "faststart"} if fmt == "mp4" else None)
        made[name] = root / name
        for fraction in (0.5, 0.9):  # cut short: a download or copy interrupted
            cut = root / f"cut{int(fraction * 100)}{name[4:]}"
            data = made[name].read_bytes()
            cut.write_bytes(data[: int(len(data) * fraction)])
            made[cut.name] = cut
    made["lastcut.mp4"] = root / "lastcut.mp4"
    made["lastcut.mp4"].write_bytes(cut_in_last_packet(made["clip.mp4"]))
    return made


def test_auto_picks_the_real_torchcodec():
    assert resolve_decoder("auto") == "torchcodec"


@pytest.mark.parametrize("name", ["clip.mp4", "clip.webm", "clip.mkv"])
def test_frames_are_pyav_s_pixel_for_pixel(clips, name):
    every = _pyav_all(clips[name])
    assert video_frame_count(str(clips[name]), "torchcodec") == COUNT == len(every)
    expected = torch.from_numpy(np.stack([every[i] for i in INDICES])).permute(0, 3, 1, 2)
    assert torch.equal(read_video_frames(str(clips[name]), INDICES, "torchcodec"), expected)
    # and through the whole file, in reverse: exact seeking, not a decode from the start
    backwards = list(range(COUNT))[::-1]
    assert torch.equal(read_video_frames(str(clips[name]), backwards, "torchcodec"),
                       read_video_frames(str(clips[name]), backwards, "av"))


def test_its_scan_counts_packets_so_a_cut_webm_looks_complete_to_it(clips):
    # The behaviour the duration check answers: torchcodec itself accepts the cut file.
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(str(clips["cut50.webm"]), seek_mode="exact")
    assert decoder.metadata.num_frames_from_header is None
    assert len(decoder) < COUNT // 2 + 2
    with pytest.raises(FrameReadError, match="its duration announces about 24 frames"):
        video_frame_count(str(clips["cut50.webm"]), "torchcodec")


@pytest.mark.parametrize("name", ["cut50.mp4", "cut90.mp4", "cut50.webm", "cut90.webm",
                                  "cut50.mkv", "cut90.mkv"])
def test_a_video_cut_short_is_refused_like_pyav_does(clips, name):
    reasons = {}
    for decoder in ("av", "torchcodec"):
        with pytest.raises(FrameReadError, match="truncated video") as refused:
            video_frame_count(str(clips[name]), decoder)
        with pytest.raises(FrameReadError, match="truncated video"):
            read_video_frames(str(clips[name]), [0, 1], decoder)
        reasons[decoder] = refused.value.reason
    assert reasons["torchcodec"] == reasons["av"]  # same count, same words


def test_the_first_frame_that_does_not_decode_is_named(clips):
    path = str(clips["lastcut.mp4"])
    assert video_frame_count(path, "torchcodec") == COUNT  # every packet is counted
    assert torch.equal(read_video_frames(path, [0, 5, 3], "torchcodec"),
                       read_video_frames(path, [0, 5, 3], "av"))
    with pytest.raises(FrameReadError, match=r"truncated video: the container announces 24 "
                                             r"frames but frame \d+ does not decode "
                                             r"\(RuntimeError: ") as refused:
        read_video_frames(path, list(range(COUNT)), "torchcodec")
    decoded = len(_pyav_all(clips["lastcut.mp4"]))
    first = int(refused.value.reason.split("but frame ")[1].split()[0])
    assert decoded <= first < COUNT  # frames before it decode (PyAV agrees)


def test_the_duration_comes_from_pyav_where_torchcodec_hides_it(clips, monkeypatch):
    # The container's duration is read through torchcodec._core (not public API): a version
    # without it must not let a cut webm through.
    from torchcodec.decoders import VideoDecoder

    found = decoding._container_duration_from_torchcodec(VideoDecoder(str(clips["cut50.webm"])))
    assert found == pytest.approx(2.0)  # 0.7.0 has it; where this fails, PyAV's is used

    def gone(decoder):
        raise AttributeError("module 'torchcodec._core' has no attribute 'get_container_metadata'")

    monkeypatch.setattr(decoding, "_container_duration_from_torchcodec", gone)
    with pytest.raises(FrameReadError, match="its duration announces about 24 frames"):
        video_frame_count(str(clips["cut50.webm"]), "torchcodec")
    assert video_frame_count(str(clips["clip.webm"]), "torchcodec") == COUNT


def test_a_file_without_video_is_named_so(tmp_path):
    import av

    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    for decoder in ("av", "torchcodec"):
        with pytest.raises(FrameReadError, match="no video stream"):
            video_frame_count(str(path), decoder)


@pytest.mark.parametrize("content", [b"", b"not a video"])
def test_unreadable_files_are_reported_not_raised(tmp_path, content):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(FrameReadError, match="Could not open"):
        read_video_frames(str(path), [0], "torchcodec")
    with pytest.raises(FrameReadError, match="file not found"):
        read_video_frames(str(tmp_path / "missing.mp4"), [0], "torchcodec")


def test_indices_past_the_end_read_the_last_frame(clips):
    path = str(clips["clip.mp4"])
    assert torch.equal(read_video_frames(path, [COUNT + 5, -3], "torchcodec"),
                       read_video_frames(path, [COUNT - 1, 0], "av"))
