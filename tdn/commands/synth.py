"""``tdn synth``: write a synthetic dataset whose classes differ only in motion.

Each mp4 shows a random smooth texture translating left, right, up or down. Any single frame
has the same distribution whatever the class, so a per-frame model (TSN) stays at chance while
TDN's temporal-difference modules can learn the direction. Writes videos/, train.txt, val.txt
(``path label``, relative to --output) and classes.txt. Train with --flip-label-swaps 0:1 (a
horizontal flip turns "left" into "right") or --no-flip.
"""

from __future__ import annotations

import argparse

from .common import positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "synth", help="write a synthetic motion-only dataset (mp4 + annotation lists)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="dataset folder (created)")
    parser.add_argument("--classes", type=int, choices=(2, 3, 4), default=4,
                        help="directions: left, right[, up[, down]] (default 4)")
    parser.add_argument("--train-per-class", type=positive_int, default=48)
    parser.add_argument("--val-per-class", type=positive_int, default=16)
    parser.add_argument("--frames", type=positive_int, default=24, help="frames per video")
    parser.add_argument("--size", type=positive_int, default=64, help="frame side (even)")
    parser.add_argument("--speed", type=positive_int, default=2, help="pixels per frame")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from ..data.synthetic import write_motion_dataset

    paths = write_motion_dataset(args.output, train_per_class=args.train_per_class,
                                 val_per_class=args.val_per_class, num_frames=args.frames,
                                 size=args.size, speed=args.speed, seed=args.seed,
                                 num_classes=args.classes)
    total = (args.train_per_class + args.val_per_class) * args.classes
    print(f"wrote {total} videos to {args.output}: {paths['train']}, {paths['val']}, "
          f"{paths['classes']}")
    return 0
