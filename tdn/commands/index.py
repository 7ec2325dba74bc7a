"""``tdn index``: annotation lists and classes.txt from a dataset as it is distributed.

  tdn index folder ROOT --output LISTS [--split 0.8,0.2 | --split-file train=trainlist01.txt
                                       --split-file val=testlist01.txt]
      ROOT/<class>/<video file or frame folder>; classes are the folder names, sorted.
  tdn index ssv2 --videos DIR --labels labels.json --train train.json --val validation.json
      --output LISTS      Something-Something V2 (ids map to <id>.webm in DIR)
  tdn index kinetics --videos DIR kinetics_train.csv kinetics_val.csv --output LISTS
      [--pattern '{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4']

Every video is probed once (frame count, complete or not) on --workers threads; unreadable
ones are left out, counted on stderr and listed in LISTS/skipped.txt. Writes LISTS/<split>.txt
('path label' for videos, 'path num_frames label' for frame folders, paths relative to the
video root) and LISTS/classes.txt, the files `tdn train` reads:

  tdn train --train-list LISTS/train.txt --val-list LISTS/val.txt --data-root ROOT
            --class-names LISTS/classes.txt ...
"""

from __future__ import annotations

import argparse
import os
import sys

from .common import DECODER_CHOICES, DECODER_HELP, decoder_choice, positive_int


def _split_file(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE (e.g. train=trainlist01.txt), "
                                         f"got {text!r}")
    return name, path


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True,
                        help="folder for <split>.txt, classes.txt and skipped.txt (created)")
    parser.add_argument("--workers", type=positive_int, default=min(8, os.cpu_count() or 1),
                        help="videos probed in parallel (default %(default)s)")
    parser.add_argument("--decoder", type=decoder_choice, choices=DECODER_CHOICES,
                        default="auto", help=DECODER_HELP + " (default %(default)s)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar")


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..data.indexing import KINETICS_PATTERN  # plain Python: no torch

    parser = subparsers.add_parser(
        "index", help="build annotation lists and classes.txt from a folder tree, "
                      "Something-Something V2 or Kinetics files",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sources = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)

    folder = sources.add_parser("folder", help="ROOT/<class>/<video or frame folder>")
    folder.add_argument("root", help="the tree's root (the --data-root of tdn train)")
    how = folder.add_mutually_exclusive_group()
    how.add_argument("--split", default="0.8,0.2",
                     help="fractions per class for train,val[,test] (default %(default)s)")
    how.add_argument("--split-file", dest="split_files", type=_split_file, action="append",
                     metavar="NAME=FILE",
                     help="a UCF101-style split file ('Class/video.avi [label]' per line) "
                          "making list NAME.txt; repeat for each list")
    folder.add_argument("--seed", type=int, default=0, help="shuffle of --split (default 0)")
    _add_common(folder)

    ssv2 = sources.add_parser("ssv2", help="Something-Something V2's JSON files")
    ssv2.add_argument("--videos", required=True, help="folder of <id>.webm")
    ssv2.add_argument("--labels", required=True, help="labels.json (template -> class index)")
    ssv2.add_argument("--train", help="train.json")
    ssv2.add_argument("--val", help="validation.json")
    ssv2.add_argument("--extension", default=".webm", help="video extension (default .webm)")
    _add_common(ssv2)

    kinetics = sources.add_parser("kinetics", help="Kinetics CSVs "
                                  "(label,youtube_id,time_start,time_end,split)")
    kinetics.add_argument("csv", nargs="+", help="CSV files; each row's list is its split")
    kinetics.add_argument("--videos", required=True, help="folder the pattern is relative to")
    kinetics.add_argument("--pattern", default=KINETICS_PATTERN,
                          help="file of a row, from its CSV fields (default %(default)s)")
    _add_common(kinetics)

    parser.set_defaults(func=run)
    return parser


def _gather(args):
    """(video root, classes, items, skipped before probing) for the chosen source."""
    from ..data import indexing

    if args.source == "folder":
        classes, found = indexing.scan_class_tree(args.root)
        if args.split_files:
            items, missing = indexing.split_by_files(found, dict(args.split_files))
        else:
            items = indexing.split_by_ratios(found, indexing.parse_split_ratios(args.split),
                                             seed=args.seed)
            missing = []
        return args.root, classes, items, missing
    if args.source == "ssv2":
        split_files = {name: path for name, path in (("train", args.train), ("val", args.val))
                       if path}
        if not split_files:
            raise ValueError("give --train and/or --val (train.json, validation.json)")
        classes, items = indexing.gather_something_v2(args.labels, split_files, args.extension)
        return args.videos, classes, items, []
    classes, items = indexing.gather_kinetics(args.csv, args.pattern)
    return args.videos, classes, items, []


def run(args) -> int:
    from ..data import indexing

    root, classes, items, missing = _gather(args)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"--videos: folder not found: {root}")
    probed, unreadable = indexing.probe_items(root, items, decoder=args.decoder,
                                              workers=args.workers, progress=args.progress)
    skipped = missing + unreadable
    written = indexing.write_index(args.output, classes, probed, skipped)
    per_split = ", ".join(f"{split} {sum(p.item.split == split for p in probed)}"
                          for split in written if split not in ("classes", "skipped"))
    print(f"indexed {len(probed)} of {len(items) + len(missing)} items, {len(classes)} classes "
          f"({per_split}); {indexing.frame_count_summary(probed)}")
    if skipped:
        print(f"skipped {len(skipped)} (listed in {written['skipped']}), e.g. "
              f"{skipped[0].item.path}: {skipped[0].reason}", file=sys.stderr)
    print(f"wrote {', '.join(written[name] for name in written if name != 'skipped')}")
    return 0
