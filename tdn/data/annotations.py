"""Annotation lists in the two formats of the authors' code.

* frame folders: ``path num_frames label`` -- ``path`` is a folder of decoded frames
  (``img_00001.jpg`` ...), ``num_frames`` how many it holds;
* videos: ``path label`` -- ``path`` is a video file decoded on the fly.

Fields are separated by whitespace. Paths are relative to ``data_root`` unless absolute.
Blank lines and lines starting with ``#`` are ignored; a UTF-8 byte-order mark is skipped.
Trailing fields are split from the right, so a path may contain spaces; the automatic
format takes three fields with an integer in the middle for a frame folder, and a line whose
next-to-last field is not an integer for a video. A longer line ending in two integers
(``my clip 12 4``) is a frame folder ``my clip`` of 12 frames or a video ``my clip 12``: the
one that exists on disk decides, and the line is refused when neither or both do. An item
listed twice is a warning naming both lines; an item listed with two labels is an error.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Literal

ListFormat = Literal["auto", "frames", "videos"]


@dataclass(frozen=True)
class VideoRecord:
    """One annotated item: where it is, how many frames (None for a video file), its class."""

    path: str
    label: int
    num_frames: int | None = None

    @property
    def is_frame_folder(self) -> bool:
        return self.num_frames is not None


def _parse_int(text: str, what: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{where}: {what} must be an integer, got {text!r}") from None


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _detect_format(line: str, where: str, data_root: str | None) -> ListFormat:
    """``path num_frames label`` when the line has three fields and the middle one is an
    integer; ``path label`` when the field before the label is not an integer (the path may
    then contain spaces). A longer line ending in two integers is decided by the file system
    (``data_root``: where relative paths are; None for the working directory)."""
    tokens = line.split()
    if len(tokens) == 2 or (len(tokens) >= 3 and not _is_int(tokens[-2])):
        return "videos"
    if len(tokens) == 3:
        return "frames"
    if len(tokens) > 3:
        folder, _, _ = line.rsplit(maxsplit=2)
        video, _ = line.rsplit(maxsplit=1)
        root = data_root or ""
        is_folder = os.path.isdir(os.path.join(root, folder))
        is_video = os.path.isfile(os.path.join(root, video))
        if is_folder != is_video:
            return "frames" if is_folder else "videos"
        found = "both exist" if is_folder else "neither exists"
        raise ValueError(
            f"{where}: {line!r} is a frame folder {folder!r} or a video {video!r}, and "
            f"{found}{' under ' + root if root else ''} (pass the list format explicitly)")
    raise ValueError(f"{where}: expected 'path label' or 'path num_frames label', "
                     f"got {len(tokens)} field in {line!r}")


def parse_annotation_line(line: str, fmt: ListFormat, where: str,
                          data_root: str | None = None) -> VideoRecord:
    """Parse one non-empty line; ``where`` ("file:line") prefixes error messages;
    ``data_root`` (where relative paths are) settles lines that either format could read."""
    if fmt == "auto":
        fmt = _detect_format(line, where, data_root)
    if fmt == "frames":
        tokens = line.rsplit(maxsplit=2)
        if len(tokens) != 3:
            raise ValueError(f"{where}: expected 'path num_frames label', got {line!r}")
        path, frames_text, label_text = tokens
        num_frames = _parse_int(frames_text, "num_frames", where)
        if num_frames < 1:
            raise ValueError(f"{where}: num_frames must be >= 1, got {num_frames}")
    elif fmt == "videos":
        tokens = line.rsplit(maxsplit=1)
        if len(tokens) != 2:
            raise ValueError(f"{where}: expected 'path label', got {line!r}")
        path, label_text = tokens
        num_frames = None
    else:
        raise ValueError(f"list format must be 'auto', 'frames' or 'videos', got {fmt!r}")
    label = _parse_int(label_text, "label", where)
    if label < 0:
        raise ValueError(f"{where}: label must be >= 0, got {label}")
    return VideoRecord(path=path, label=label, num_frames=num_frames)


def read_annotation_list(
    list_file: str | os.PathLike, data_root: str | os.PathLike | None = None,
    fmt: ListFormat = "auto",
) -> list[VideoRecord]:
    """Read an annotation list; paths are joined to ``data_root`` (absolute paths kept)."""
    list_file = os.fspath(list_file)
    if os.path.isdir(list_file):
        raise IsADirectoryError(f"annotation list {list_file} is a directory, not a list file")
    if not os.path.isfile(list_file):
        raise FileNotFoundError(f"annotation list not found: {list_file}")
    records = []
    first_line: dict[str, tuple[int, int]] = {}  # path -> (line number, label)
    # utf-8-sig: a byte-order mark (as some editors write) is not part of the first path.
    with open(list_file, encoding="utf-8-sig") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            root = None if data_root is None else os.fspath(data_root)
            record = parse_annotation_line(line, fmt, f"{list_file}:{number}", root)
            if record.path in first_line:
                seen_at, seen_label = first_line[record.path]
                if seen_label != record.label:
                    raise ValueError(f"{list_file}:{number}: {record.path} has label "
                                     f"{record.label}, but label {seen_label} at line "
                                     f"{seen_at}: one item cannot have two labels")
                warnings.warn(f"{list_file}:{number}: {record.path} is listed again "
                              f"(first at line {seen_at}); it will be sampled twice",
                              stacklevel=2)
            else:
                first_line[record.path] = (number, record.label)
            if data_root is not None:
                record = VideoRecord(os.path.join(os.fspath(data_root), record.path),
                                     record.label, record.num_frames)
            records.append(record)
    if not records:
        raise ValueError(f"annotation list {list_file} holds no items")
    return records


def check_image_template(image_template: str, argument: str = "image_template") -> None:
    """Refuse a frame-file pattern that cannot name frames, naming ``argument``: it must take
    one integer (``str.format``) and give different names to different frames."""
    if not isinstance(image_template, str):
        raise TypeError(f"{argument} must be a string, got {type(image_template).__name__}")
    try:
        first, second = image_template.format(1), image_template.format(2)
    except (IndexError, KeyError, ValueError, TypeError, AttributeError) as error:
        raise ValueError(f"{argument} {image_template!r} is not a pattern of one frame index "
                         f"such as 'img_{{:05d}}.jpg' ({type(error).__name__}: {error})") from None
    if first == second:
        raise ValueError(f"{argument} {image_template!r} has no place for the frame index "
                         "(a '{}' field, e.g. 'img_{:05d}.jpg'): every frame would be one file")


def read_class_names(path: str | os.PathLike) -> list[str]:
    """One class name per line, line ``i`` naming class ``i``. Also accepts ``index name``
    or ``index,name`` lines (as in label maps shipped with Kinetics / Something lists)."""
    names: dict[int, str] = {}
    plain: list[str] = []
    with open(os.fspath(path), encoding="utf-8") as handle:
        for raw in handle:
            line = raw.strip()
            if not line:
                continue
            head, sep, tail = line.replace(",", " ", 1).partition(" ")
            if sep and head.isdigit():
                names[int(head)] = tail.strip()
            else:
                plain.append(line)
    if names and plain:
        raise ValueError(f"{path}: mixes 'index name' lines with plain names")
    if names:
        missing = sorted(set(range(max(names) + 1)) - set(names))
        if missing:
            raise ValueError(f"{path}: no name for class indices {missing[:10]}")
        return [names[i] for i in range(max(names) + 1)]
    if not plain:
        raise ValueError(f"class-name file {path} is empty")
    return plain
