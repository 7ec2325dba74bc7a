"""Annotation lists under awkward input: byte-order marks, spaces, duplicates, directories."""

from __future__ import annotations

import pytest

from tdn.data.annotations import read_annotation_list


def _write(tmp_path, text: str, encoding="utf-8"):
    path = tmp_path / "list.txt"
    path.write_text(text, encoding=encoding)
    return path


def test_a_byte_order_mark_keeps_the_first_item(tmp_path):
    records = read_annotation_list(_write(tmp_path, "a.mp4 1\nb.mp4 2\n", "utf-8-sig"))
    assert [(r.path, r.label) for r in records] == [("a.mp4", 1), ("b.mp4", 2)]


def test_a_path_with_spaces_in_the_automatic_format(tmp_path):
    records = read_annotation_list(_write(tmp_path, "my video.mp4 3\nmy other clip.mp4 4\n"))
    assert [(r.path, r.num_frames, r.label) for r in records] == [
        ("my video.mp4", None, 3), ("my other clip.mp4", None, 4)]


def test_an_ambiguous_line_that_matches_nothing_on_disk_names_the_file_and_line(tmp_path):
    with pytest.raises(ValueError, match=r"list.txt:2: .*frame folder 'frames dir' or a video "
                                         r"'frames dir 12'.*neither exists.*format explicitly"):
        read_annotation_list(_write(tmp_path, "a.mp4 1\nframes dir 12 4\n"), tmp_path)


def test_a_frame_folder_with_spaces_is_found_on_disk(tmp_path):
    (tmp_path / "frames dir").mkdir()
    records = read_annotation_list(_write(tmp_path, "a.mp4 1\nframes dir 12 4\n"), tmp_path)
    assert [(r.path, r.num_frames, r.label) for r in records] == [
        (str(tmp_path / "a.mp4"), None, 1), (str(tmp_path / "frames dir"), 12, 4)]


def test_a_video_whose_name_ends_in_a_number_is_found_on_disk(tmp_path):
    (tmp_path / "my cut 12").write_bytes(b"")
    records = read_annotation_list(_write(tmp_path, "my cut 12 3\n"), tmp_path)
    assert [(r.path, r.num_frames, r.label) for r in records] == [
        (str(tmp_path / "my cut 12"), None, 3)]


def test_an_ambiguous_line_with_both_on_disk_is_refused(tmp_path):
    (tmp_path / "my cut").mkdir()
    (tmp_path / "my cut 12").write_bytes(b"")
    with pytest.raises(ValueError, match="both exist"):
        read_annotation_list(_write(tmp_path, "my cut 12 3\n"), tmp_path)


def test_a_duplicate_item_warns_naming_both_lines(tmp_path):
    with pytest.warns(UserWarning, match=r"list.txt:3: a.mp4 is listed again \(first at line 1\)"):
        records = read_annotation_list(_write(tmp_path, "a.mp4 1\nb.mp4 2\na.mp4 1\n"))
    assert len(records) == 3


def test_one_item_with_two_labels_is_an_error_naming_both_lines(tmp_path):
    with pytest.raises(ValueError, match=r"list.txt:2: a.mp4 has label 2, but label 1 at line 1"):
        read_annotation_list(_write(tmp_path, "a.mp4 1\na.mp4 2\n"))


def test_a_directory_is_reported_as_such(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        read_annotation_list(tmp_path)


def test_a_missing_file_is_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_annotation_list(tmp_path / "nope.txt")

