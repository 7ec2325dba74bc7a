"""``tdn evaluate``: accuracy of a checkpoint on a labelled list.

Prints top-1, top-5 and mean per-class accuracy; the last line of output is one JSON object
with every metric (per-class accuracy included). With --output, also writes metrics.json,
scores.pt (per-video averaged scores) and confusion.png (when matplotlib is installed).
Works with this project's checkpoints and with the authors' released ones (give --arch, and
--segments, for those).

Several --checkpoint options evaluate an ensemble: each model reads the videos with its own
segment count and their per-video scores are fused (--fuse, softmax by default). --save-scores
keeps the per-video scores, to fuse with others later by 'tdn ensemble'.

Centre crop:            tdn evaluate --checkpoint best.pt --val-list val.txt --data-root DATA
Kinetics 10 clips x 3:  ... --clips 10 --crops 3 --batch-size 1
8F + 16F ensemble:      ... --checkpoint tdn8.pth.tar --checkpoint tdn16.pth.tar
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from .common import (add_data_options, add_keep_memory_option, add_runtime_options,
                     keep_memory_on_cpu, positive_int, print_json_line, setup_logging)

FUSIONS = ("softmax", "logits")  # tdn.engine.video_scores.FUSIONS (which imports torch)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate", help="top-1/top-5/per-class accuracy and confusion matrix of a checkpoint",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, action="append",
                        help="training or model checkpoint; repeat it for an ensemble")
    parser.add_argument("--val-list", required=True, help="annotation list to evaluate on")
    parser.add_argument("--output", default=None,
                        help="folder for metrics.json, scores.pt, confusion.png")
    parser.add_argument("--save-scores", default=None, metavar="FILE",
                        help="write the per-video scores (ids, labels, scores) for "
                             "'tdn ensemble'")
    parser.add_argument("--arch", default=None, help="needed for checkpoints that do not record it")
    parser.add_argument("--num-classes", type=positive_int, default=None)
    parser.add_argument("--segments", type=positive_int, default=None, action="append",
                        help="T (default: the checkpoint's, else 8); once for every "
                             "checkpoint, or once per --checkpoint")
    parser.add_argument("--input-size", type=positive_int, default=224)
    parser.add_argument("--scale-size", type=positive_int, default=None,
                        help="short side before cropping (default input-size*256/224)")
    parser.add_argument("--clips", type=positive_int, default=1, help="clips per video (default 1)")
    parser.add_argument("--crops", type=int, choices=(1, 3), default=1,
                        help="1 centre crop or 3 crops along the long side (default 1)")
    parser.add_argument("--average", choices=("logits", "softmax"), default="logits",
                        help="how views are averaged (default logits, as the authors)")
    parser.add_argument("--fuse", choices=FUSIONS, default="softmax",
                        help="how the models of an ensemble are fused: the mean of their "
                             "softmax probabilities (default; models with different T do not "
                             "share a logit scale) or of their logits")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="videos per batch")
    add_data_options(parser)
    add_runtime_options(parser)
    add_keep_memory_option(parser)
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from ..engine.evaluator import EvalConfig, run_evaluation

    rank = int(os.environ.get("RANK", "0"))
    setup_logging(rank)
    keep_memory_on_cpu(args, args.device)
    # Every EvalConfig field is an option of the same name.
    config = EvalConfig(**{spec.name: getattr(args, spec.name)
                           for spec in dataclasses.fields(EvalConfig)})
    metrics = run_evaluation(config)
    if rank == 0:
        print(f"{metrics['count']} videos, {metrics['views']} view(s) each, "
              f"{metrics['skipped']} skipped: top-1 {metrics['top1']:.2f}%  "
              f"top-5 {metrics['top5']:.2f}%  mean class accuracy "
              f"{metrics['mean_class_accuracy']:.2f}%")
        for model in metrics.get("models", []):
            print(f"  {model['checkpoint']} (T={model['num_segments']}): "
                  f"top-1 {model['top1']:.2f}%  top-5 {model['top5']:.2f}%")
        print_json_line(metrics)
    return 0
