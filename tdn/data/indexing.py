"""Annotation lists from the datasets people have: a class-per-folder tree, Something-Something
V2's JSON files, Kinetics CSVs.

Indexing runs in three steps, each a function of this module:

1. **gather** the candidate items, ``Item(path, class_name, split)``: :func:`gather_folder_tree`
   (with :func:`split_by_ratios` or :func:`split_by_files`), :func:`gather_something_v2`,
   :func:`gather_kinetics`. Paths are relative to the video root, as the lists want them.
2. **probe** each item once (:func:`probe_items`): a video's frame count through the project's
   decoder (which also rejects truncated files), a frame folder's image count. Unreadable items
   come back apart, with the reason.
3. **write** the lists (:func:`write_index`): ``<split>.txt`` per split in the formats of
   :mod:`tdn.data.annotations` (``path label`` for a video, ``path num_frames label`` for a
   frame folder), ``classes.txt`` (line ``i`` names class ``i``) and ``skipped.txt`` (what was
   left out and why), every file written atomically.
"""

from __future__ import annotations

import csv
import json
import os
import random
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..fileio import atomic_write_text

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
SPLIT_NAMES = ("train", "val", "test")  # the lists --split ratios make, in that order
KINETICS_PATTERN = "{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")


@dataclass(frozen=True)
class Item:
    """A candidate annotation: ``path`` relative to the video root, its class, its list."""

    path: str
    class_name: str
    split: str


@dataclass(frozen=True)
class Probed:
    """An item that reads: its frame count, and whether it is a frame folder."""

    item: Item
    num_frames: int
    is_frame_folder: bool


@dataclass(frozen=True)
class Skipped:
    item: Item
    reason: str


# ----------------------------------------------------------------------------- gather
def _is_video(name: str) -> bool:
    return name.lower().endswith(VIDEO_EXTENSIONS)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _frame_images(folder: str) -> list[str]:
    return sorted(name for name in os.listdir(folder) if _is_image(name))


def scan_class_tree(root: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The classes of ``root/<class>/<video or frame folder>`` (sorted folder names) and the
    ``(relative path, class name)`` of every video file and frame folder below them.

    A frame folder is a sub-folder that holds images; other files (readme, split files) and
    sub-folders without images are ignored.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"root: folder not found: {root}")
    classes = sorted(entry.name for entry in os.scandir(root)
                     if entry.is_dir() and not entry.name.startswith("."))
    items = []
    for class_name in classes:
        class_folder = os.path.join(root, class_name)
        for name in sorted(os.listdir(class_folder)):
            full = os.path.join(class_folder, name)
            is_item = _is_video(name) if os.path.isfile(full) else (
                os.path.isdir(full) and bool(_frame_images(full)))
            if is_item:
                items.append((f"{class_name}/{name}", class_name))
    if not items:
        raise ValueError(f"root: no videos or frame folders found in {root}/<class>/ "
                         f"(video extensions: {' '.join(VIDEO_EXTENSIONS)})")
    return classes, items


def parse_split_ratios(text: str) -> dict[str, float]:
    """``--split``: ``"0.8,0.2"`` (train, val) or ``"0.7,0.15,0.15"`` (train, val, test)."""
    try:
        ratios = [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--split: expected comma-separated fractions such as 0.8,0.2, "
                         f"got {text!r}") from None
    if not 2 <= len(ratios) <= 3:
        raise ValueError(f"--split: expected 2 or 3 fractions (train,val[,test]), got {text!r}")
    if any(not 0 <= ratio <= 1 for ratio in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise ValueError(f"--split: fractions must lie in [0, 1] and sum to 1, got {text!r}")
    if ratios[0] == 0:
        raise ValueError(f"--split: the train fraction must be positive, got {text!r}")
    return dict(zip(SPLIT_NAMES, ratios))


def split_by_ratios(items: Sequence[tuple[str, str]], ratios: dict[str, float],
                    seed: int = 0) -> list[Item]:
    """Each class shuffled (``seed``) and cut by ``ratios``, so every list keeps the class
    balance of the tree. Rounding gives the last lists' remainders to the first."""
    by_class: dict[str, list[str]] = defaultdict(list)
    for path, class_name in items:
        by_class[class_name].append(path)
    rng = random.Random(seed)
    out = []
    for class_name in sorted(by_class):
        paths = sorted(by_class[class_name])
        rng.shuffle(paths)
        counts = {name: round(ratio * len(paths)) for name, ratio in ratios.items()}
        counts["train"] = len(paths) - sum(n for name, n in counts.items() if name != "train")
        start = 0
        for name in ratios:
            out.extend(Item(path, class_name, name) for path in paths[start:start + counts[name]])
            start += counts[name]
    return out


def read_split_file(path: str) -> list[str]:
    """The video paths of a UCF101-style split file: ``Class/video.avi [label]`` per line (the
    label of ``trainlist01.txt`` is ignored: classes come from the tree)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--split-file: file not found: {path}")
    with open(path, encoding="utf-8") as handle:
        paths = [line.split()[0].replace("\\", "/") for line in handle if line.strip()]
    if not paths:
        raise ValueError(f"--split-file: {path} names no video")
    return paths


def split_by_files(items: Sequence[tuple[str, str]], split_files: dict[str, str]
                   ) -> tuple[list[Item], list[Skipped]]:
    """Items listed in the split files (name -> file), each in the list of its file's name;
    paths a split file names that the tree lacks come back as skipped."""
    in_tree = dict(items)
    chosen, missing = [], []
    for split, file in split_files.items():
        for path in read_split_file(file):
            class_name = in_tree.get(path)
            if class_name is None:
                missing.append(Skipped(Item(path, path.split("/")[0], split),
                                       f"named in {os.path.basename(file)} but not in the tree"))
            else:
                chosen.append(Item(path, class_name, split))
    return chosen, missing


def _read_json(path: str, argument: str):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{argument}: file not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{argument}: {path} is not valid JSON ({error})") from None


def something_template(text: str) -> str:
    """A Something-Something template without its brackets: the items' ``"Putting [something]
    on [something]"`` is the labels file's ``"Putting something on something"``."""
    return text.replace("[", "").replace("]", "").strip()


def gather_something_v2(labels_file: str, split_files: dict[str, str],
                        video_extension: str = ".webm") -> tuple[list[str], list[Item]]:
    """Something-Something V2: classes from ``labels.json`` (template -> index), items from
    ``train.json`` / ``validation.json`` (``id`` -> ``<id>.webm``, ``template`` -> class)."""
    labels = _read_json(labels_file, "--labels")
    if not isinstance(labels, dict) or not labels:
        raise ValueError(f"--labels: {labels_file} must map template names to class indices")
    try:
        index_of = {something_template(name): int(index) for name, index in labels.items()}
    except (TypeError, ValueError):
        raise ValueError(f"--labels: {labels_file}: class indices must be integers") from None
    if sorted(index_of.values()) != list(range(len(index_of))):
        raise ValueError(f"--labels: {labels_file}: indices must be 0..{len(index_of) - 1}, "
                         f"each once")
    classes = sorted(index_of, key=index_of.get)
    items = []
    for split, file in split_files.items():
        entries = _read_json(file, f"--{split}")
        if not isinstance(entries, list):
            raise ValueError(f"--{split}: {file} must be a list of {{id, template}} objects")
        for number, entry in enumerate(entries):
            try:
                video_id, template = str(entry["id"]), something_template(entry["template"])
            except (KeyError, TypeError):
                raise ValueError(f"--{split}: {file}: entry {number} lacks 'id' or "
                                 f"'template'") from None
            if template not in index_of:
                raise ValueError(f"--{split}: {file}: entry {number} (id {video_id}) has "
                                 f"template {template!r}, which {labels_file} does not list")
            items.append(Item(video_id + video_extension, template, split))
    return classes, items


def gather_kinetics(csv_files: Sequence[str], pattern: str = KINETICS_PATTERN
                    ) -> tuple[list[str], list[Item]]:
    """Kinetics: rows ``label,youtube_id,time_start,time_end,split`` of the CSVs; the file of a
    row is ``pattern`` filled with its fields (times as integers); its list is its ``split``
    (``validate`` is written ``val``). Classes: the labels, sorted."""
    items = []
    for file in csv_files:
        if not os.path.isfile(file):
            raise FileNotFoundError(f"csv: file not found: {file}")
        with open(file, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            absent = [name for name in KINETICS_COLUMNS if name not in (reader.fieldnames or [])]
            if absent:
                raise ValueError(f"csv: {file} lacks the column(s) {', '.join(absent)} "
                                 f"(expected {','.join(KINETICS_COLUMNS)})")
            for number, row in enumerate(reader, start=2):
                try:
                    fields = dict(row, time_start=int(float(row["time_start"])),
                                  time_end=int(float(row["time_end"])))
                except ValueError:
                    raise ValueError(f"csv: {file}:{number}: time_start and time_end must be "
                                     f"numbers") from None
                try:
                    path = pattern.format(**fields)
                except (KeyError, ValueError, IndexError) as error:
                    raise ValueError(f"--pattern: {pattern!r} cannot be filled from "
                                     f"{','.join(KINETICS_COLUMNS)} ({error})") from None
                split = {"validate": "val", "validation": "val"}.get(row["split"], row["split"])
                items.append(Item(path, row["label"], split))
    if not items:
        raise ValueError("csv: the files hold no rows")
    return sorted({item.class_name for item in items}), items


# ----------------------------------------------------------------------------- probe
def probe_item(root: str, item: Item, decoder: str = "auto") -> Probed | Skipped:
    """Read ``item`` once: a video's frame count (truncated files are unreadable), or a
    frame folder's image count after opening its first image."""
    from .decoding import FrameReadError, video_frame_count

    full = os.path.join(root, item.path)
    if os.path.isdir(full):
        images = _frame_images(full)
        if not images:
            return Skipped(item, "frame folder without images")
        try:
            from PIL import Image

            with Image.open(os.path.join(full, images[0])) as image:
                image.verify()
        except Exception as error:
            return Skipped(item, f"{images[0]}: {type(error).__name__}: {error}")
        return Probed(item, len(images), is_frame_folder=True)
    try:
        return Probed(item, video_frame_count(full, decoder), is_frame_folder=False)
    except FrameReadError as error:
        return Skipped(item, error.reason)


def probe_items(root: str, items: Sequence[Item], decoder: str = "auto", workers: int = 1,
                progress: bool = True) -> tuple[list[Probed], list[Skipped]]:
    """Probe every item on ``workers`` threads (the decoders demux in C, outside the GIL), in
    the items' order, with a progress bar on stderr when ``progress``."""
    from .decoding import resolve_decoder

    resolve_decoder(decoder)  # a bad or absent decoder fails once, before any file
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results: Iterable = pool.map(lambda item: probe_item(root, item, decoder), items)
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(items), desc="probing", unit="video",
                           leave=False, dynamic_ncols=True)
        outcomes = list(results)
    return ([o for o in outcomes if isinstance(o, Probed)],
            [o for o in outcomes if isinstance(o, Skipped)])


# ----------------------------------------------------------------------------- write
def annotation_line(probed: Probed, label: int) -> str:
    """The line :func:`tdn.data.annotations.parse_annotation_line` reads back."""
    if probed.is_frame_folder:
        return f"{probed.item.path} {probed.num_frames} {label}"
    return f"{probed.item.path} {label}"


def write_index(output: str, classes: Sequence[str], probed: Sequence[Probed],
                skipped: Sequence[Skipped]) -> dict[str, str]:
    """``<split>.txt`` per split, ``classes.txt`` and ``skipped.txt`` in ``output``; returns
    the written paths by name. Lists keep the order of ``probed``; a split whose items were
    all skipped gets an empty list, so that no earlier run's list is left behind for it."""
    label_of = {name: index for index, name in enumerate(classes)}
    if len(label_of) != len(classes):
        repeated = [name for name, n in Counter(classes).items() if n > 1]
        raise ValueError(f"class names repeat: {repeated[:5]}")
    # Every list that had items, even one whose items were all skipped (written empty).
    lines: dict[str, list[str]] = {entry.item.split: [] for entry in [*probed, *skipped]}
    for entry in probed:
        lines[entry.item.split].append(annotation_line(entry, label_of[entry.item.class_name]))
    os.makedirs(output, exist_ok=True)
    written = {}
    for split, split_lines in lines.items():
        written[split] = str(atomic_write_text(os.path.join(output, f"{split}.txt"),
                                               "".join(line + "\n" for line in split_lines)))
    written["classes"] = str(atomic_write_text(os.path.join(output, "classes.txt"),
                                               "".join(name + "\n" for name in classes)))
    skipped_text = "".join(f"{s.item.path}\t{s.reason}\n" for s in skipped)
    written["skipped"] = str(atomic_write_text(os.path.join(output, "skipped.txt"), skipped_text))
    return written


def frame_count_summary(probed: Sequence[Probed]) -> str:
    """``frames min/median/max`` of the probed items, for the command's report."""
    counts = sorted(entry.num_frames for entry in probed)
    if not counts:
        return "no readable item"
    return f"frames per item: min {counts[0]}, median {counts[len(counts) // 2]}, max {counts[-1]}"
