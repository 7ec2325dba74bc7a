"""Annotation lists, decoding (PyAV, frame folders), the dataset and corrupt-file handling."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from tdn.data import (EvalTransform, FrameReadError, SkippedItem, TrainTransform, VideoDataset,
                      VideoRecord,
                      build_loader, read_annotation_list, read_class_names, read_folder_frames,
                      read_video_frames, video_frame_count)
from tdn.data.synthetic import write_mp4

SHADE = 9  # frame i is filled with grey level SHADE * i, so a decoded frame tells its index


def _numbered_frames(count, size=32):
    return np.stack([np.full((size, size, 3), SHADE * i, np.uint8) for i in range(count)])


def _frame_numbers(frames):
    return [round(float(f.float().mean()) / SHADE) for f in frames]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    write_mp4(str(root / "long.mp4"), _numbered_frames(28))
    write_mp4(str(root / "one.mp4"), _numbered_frames(1))
    (root / "garbage.mp4").write_bytes(b"this is not a video" * 100)
    (root / "empty.mp4").write_bytes(b"")
    data = (root / "long.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    return root


def test_pyav_decodes_the_requested_frames_in_order(videos):
    path = str(videos / "long.mp4")
    assert video_frame_count(path, "av") == 28
    frames = read_video_frames(path, [5, 0, 27, 5, 12], "av")
    assert frames.shape == (5, 3, 32, 32) and frames.dtype == torch.uint8
    assert _frame_numbers(frames) == [5, 0, 27, 5, 12]


def test_indices_past_the_last_decoded_frame_are_clamped(videos):
    frames = read_video_frames(str(videos / "long.mp4"), [26, 40], "av")
    assert _frame_numbers(frames) == [26, 27]


@pytest.mark.parametrize("name", ["garbage.mp4", "empty.mp4", "missing.mp4"])
def test_unreadable_videos_raise_with_path_and_reason(videos, name):
    with pytest.raises(FrameReadError) as info:
        video_frame_count(str(videos / name), "av")
    assert info.value.path.endswith(name) and info.value.reason


def test_dataset_samples_snippets_from_a_video(videos):
    path = str(videos / "long.mp4")
    records = read_annotation_list_from_lines(videos, [f"{path} 3"])
    dataset = VideoDataset(records, num_segments=4, transform=EvalTransform(32, 32), mode="val")
    sample = dataset[0]
    assert sample.frames.shape == (1, 20, 3, 32, 32) and sample.label == 3
    # 28 frames, 24 start positions, 4 segments of 6 -> centres 3, 9, 15, 21
    expected = [s + j for s in (3, 9, 15, 21) for j in range(5)]
    assert _frame_numbers(sample.frames[0]) == expected


def test_one_frame_video_gives_repeated_frames(videos):
    records = read_annotation_list_from_lines(videos, [f"{videos / 'one.mp4'} 0"])
    dataset = VideoDataset(records, 8, TrainTransform(24), mode="train")
    sample = dataset[(0, 11)]
    assert sample.frames.shape == (1, 40, 3, 24, 24)
    assert (sample.frames == sample.frames[:, :1]).all()


def test_multi_view_test_sampling_shapes(videos):
    records = read_annotation_list_from_lines(videos, [f"{videos / 'long.mp4'} 1"])
    dataset = VideoDataset(records, 2, EvalTransform(32, 32, num_crops=3), mode="test", num_clips=2)
    sample = dataset[0]
    assert sample.frames.shape == (6, 10, 3, 32, 32)
    # views are crop-major: views 0 and 1 are the two clips of the first crop
    starts_clip0 = _frame_numbers(sample.frames[0, ::5])
    starts_clip1 = _frame_numbers(sample.frames[1, ::5])
    assert all(a < b for a, b in zip(starts_clip0, starts_clip1))


def test_corrupt_items_are_skipped_and_reported(videos):
    names = ["long.mp4", "garbage.mp4", "truncated.mp4", "missing.mp4", "one.mp4", "empty.mp4"]
    records = read_annotation_list_from_lines(videos, [f"{n} {i}" for i, n in enumerate(names)],
                                              root=videos)
    dataset = VideoDataset(records, 2, EvalTransform(32, 32), mode="val")
    loader = build_loader(dataset, batch_size=3, train=False, workers=0)
    batches = list(loader)
    labels = torch.cat([b.labels for b in batches]).tolist()
    skipped = [s for b in batches for s in b.skipped]
    skipped_names = {os.path.basename(s.path) for s in skipped}
    assert {"garbage.mp4", "missing.mp4", "empty.mp4"} <= skipped_names
    assert 0 in labels and 4 in labels
    assert len(labels) + len(skipped) == len(names)
    assert all(isinstance(s, SkippedItem) and s.reason for s in skipped)


def test_loader_workers_give_the_same_batches_as_the_main_process(videos):
    # One video under four labels: made in code (a list file may not give one item two labels).
    records = [VideoRecord(str(videos / "long.mp4"), label) for label in range(4)]
    dataset = VideoDataset(records, 2, TrainTransform(24), mode="train")
    plain = [b.frames for b in build_loader(dataset, 2, train=True, seed=4, workers=0)]
    pooled = [b.frames for b in build_loader(dataset, 2, train=True, seed=4, workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(plain, pooled)) and len(plain) == 2


def test_frame_folder_dataset(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(np.full((20, 30, 3), SHADE * i, np.uint8)).save(folder / f"img_{i + 1:05d}.png")
    frames = read_folder_frames(str(folder), [0, 11, 3], "img_{:05d}.png")
    assert frames.shape == (3, 3, 20, 30) and _frame_numbers(frames) == [0, 11, 3]
    list_file = tmp_path / "list.txt"
    (tmp_path / "same_clip").symlink_to(folder, target_is_directory=True)
    # The second claims more frames than exist.
    list_file.write_text("clip 12 2\nsame_clip 15 1\n")
    records = read_annotation_list(list_file, tmp_path)
    assert records[0].num_frames == 12 and records[0].label == 2
    dataset = VideoDataset(records, 2, EvalTransform(16, 20), mode="val",
                           image_template="img_{:05d}.png")
    assert dataset[0].frames.shape == (1, 10, 3, 16, 16)
    skipped = dataset[1]
    assert isinstance(skipped, SkippedItem) and "img_000" in skipped.reason


def test_annotation_formats_and_errors(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("# comment\n\na/b.mp4 3\nframes/x 40 7\n")
    records = read_annotation_list(good, "/data")
    assert [(r.path, r.num_frames, r.label) for r in records] == [
        ("/data/a/b.mp4", None, 3), ("/data/frames/x", 40, 7)]
    spaced = tmp_path / "spaced.txt"
    spaced.write_text("my video.mp4 2\n")
    assert read_annotation_list(spaced, fmt="videos")[0].path == "my video.mp4"
    for text, message in [("a.mp4 x\n", "label"), ("a 1 2 3\n", "neither exists"), ("a -1\n", "label"),
                          ("a 0 1\n", "num_frames"), ("", "no items")]:
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_annotation_list(bad)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_annotation_list(tmp_path / "nope.txt")


def test_class_names_files(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("left\nright\n")
    assert read_class_names(plain) == ["left", "right"]
    indexed = tmp_path / "indexed.txt"
    indexed.write_text("1,pushing something\n0 holding something\n")
    assert read_class_names(indexed) == ["holding something", "pushing something"]


def read_annotation_list_from_lines(directory, lines, root=None):
    path = directory / f"list_{abs(hash(tuple(lines)))}.txt"
    path.write_text("\n".join(lines) + "\n")
    return read_annotation_list(path, root)


def test_containers_without_a_frame_count_are_counted_by_demuxing(tmp_path):
    import av
    from fractions import Fraction

    path = str(tmp_path / "clip.mkv")  # Matroska headers carry no frame count
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(12))
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for image in _numbered_frames(15):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    with av.open(path) as container:
        assert container.streams.video[0].frames == 0
    assert video_frame_count(path, "av") == 15
    # counting rewinds the file: the frames read afterwards are still the right ones
    assert _frame_numbers(read_video_frames(path, [0, 7, 14, 20], "av")) == [0, 7, 14, 14]


# ----------------------------------------------------------------------------- truncated videos
def write_faststart_mp4(path, count=40, size=64):
    """An mp4 with its index (moov) before the frames, as streaming sites serve them: cut short,
    it still opens and announces every frame. Noisy frames, so that the cut falls mid-video."""
    import av
    from fractions import Fraction

    noise = np.random.default_rng(0).integers(0, 64, (count, size, size, 3), dtype=np.uint8)
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(12))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10", "preset": "veryfast"}
        for index, image in enumerate(noise):
            image = image + np.uint8((SHADE * index) % 190)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def cut_in_half(tmp_path_factory):
    root = tmp_path_factory.mktemp("truncated")
    whole = root / "whole.mp4"
    write_faststart_mp4(whole)
    data = whole.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # the index is at the front
    half = root / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    return whole, half


def test_a_faststart_mp4_cut_in_half_still_opens_and_announces_every_frame(cut_in_half):
    import av

    _, half = cut_in_half
    with av.open(str(half)) as container:  # the premise: the header alone looks complete
        assert container.streams.video[0].frames == 40


@pytest.mark.parametrize("indices", [[0, 5, 39], [0, 1, 2]], ids=["past the cut", "before it"])
def test_truncated_video_is_refused_not_padded_with_its_last_frame(cut_in_half, indices):
    whole, half = cut_in_half
    assert read_video_frames(str(whole), indices, "av").shape[0] == 3
    with pytest.raises(FrameReadError, match="truncated video: the container announces 40"):
        read_video_frames(str(half), indices, "av")


def test_frame_count_probe_refuses_a_truncated_video(cut_in_half):
    whole, half = cut_in_half
    assert video_frame_count(str(whole), "av") == 40
    with pytest.raises(FrameReadError, match="only 20 are stored") as info:
        video_frame_count(str(half), "av")
    assert info.value.path == str(half)


def test_dataset_skips_and_counts_a_truncated_video(cut_in_half, tmp_path):
    whole, half = cut_in_half
    records = read_annotation_list_from_lines(tmp_path, [f"{whole} 0", f"{half} 1"])
    dataset = VideoDataset(records, 4, EvalTransform(32, 32), mode="val", decoder="av")
    batches = list(build_loader(dataset, batch_size=2, train=False, workers=0))
    assert [b.labels.tolist() for b in batches] == [[0]]
    (skipped,) = [s for b in batches for s in b.skipped]
    assert skipped.path == str(half) and "truncated" in skipped.reason


def test_a_directory_is_not_reported_as_a_missing_file(tmp_path):
    with pytest.raises(FrameReadError, match="is a directory"):
        video_frame_count(str(tmp_path), "av")


def test_decoder_names(monkeypatch):
    from tdn.data import decoding

    assert decoding.resolve_decoder("pyav") == "av"  # the earlier name still works
    with pytest.raises(ValueError, match="decoder must be one of"):
        decoding.resolve_decoder("ffmpeg")
    monkeypatch.setattr(decoding, "decoder_available", lambda name: name == "av")
    assert decoding.resolve_decoder("auto") == "av"
    with pytest.raises(ValueError, match="'torchcodec' requested but torchcodec is not"):
        decoding.resolve_decoder("torchcodec")
