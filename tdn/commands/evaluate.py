"""``tdn evaluate``: accuracy of a checkpoint on a labelled list.

Prints top-1, top-5 and mean per-class accuracy; the last line of output is one JSON object
with every metric (per-class accuracy included). With --output, also writes confusion.png,
metrics.json and scores.pt (per-video averaged scores). Works with this project's
checkpoints and with the authors' released ones (give --arch for those).

Centre crop:            tdn evaluate --checkpoint best.pt --val-list val.txt --data-root DATA
Kinetics 10 clips x 3:  ... --clips 10 --crops 3 --batch-size 1
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from .common import (add_data_options, add_runtime_options, positive_int, print_json_line,
                     setup_logging)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate", help="top-1/top-5/per-class accuracy and confusion matrix of a checkpoint",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="training or model checkpoint")
    parser.add_argument("--val-list", required=True, help="annotation list to evaluate on")
    parser.add_argument("--output", default=None,
                        help="folder for confusion.png, metrics.json, scores.pt")
    parser.add_argument("--arch", default=None, help="needed for checkpoints that do not record it")
    parser.add_argument("--num-classes", type=positive_int, default=None)
    parser.add_argument("--segments", type=positive_int, default=None,
                        help="T (default: the checkpoint's, else 8)")
    parser.add_argument("--input-size", type=positive_int, default=224)
    parser.add_argument("--scale-size", type=positive_int, default=None,
                        help="short side before cropping (default input-size*256/224)")
    parser.add_argument("--clips", type=positive_int, default=1, help="clips per video (default 1)")
    parser.add_argument("--crops", type=int, choices=(1, 3), default=1,
                        help="1 centre crop or 3 crops along the long side (default 1)")
    parser.add_argument("--average", choices=("logits", "softmax"), default="logits",
                        help="how views are averaged (default logits, as the authors)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="videos per batch")
    add_data_options(parser)
    add_runtime_options(parser)
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from ..engine.evaluator import EvalConfig, run_evaluation

    rank = int(os.environ.get("RANK", "0"))
    setup_logging(rank)
    # Every EvalConfig field is an option of the same name.
    config = EvalConfig(**{spec.name: getattr(args, spec.name)
                           for spec in dataclasses.fields(EvalConfig)})
    metrics = run_evaluation(config)
    if rank == 0:
        print(f"{metrics['count']} videos, {metrics['views']} view(s) each, "
              f"{metrics['skipped']} skipped: top-1 {metrics['top1']:.2f}%  "
              f"top-5 {metrics['top5']:.2f}%  mean class accuracy "
              f"{metrics['mean_class_accuracy']:.2f}%")
        print_json_line(metrics)
    return 0
