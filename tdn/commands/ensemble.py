"""``tdn ensemble A.scores B.scores ...``: fuse per-video scores saved by ``tdn evaluate``.

    tdn evaluate --checkpoint tdn8.pth.tar  --val-list val.txt --save-scores t8.scores ...
    tdn evaluate --checkpoint tdn16.pth.tar --val-list val.txt --save-scores t16.scores ...
    tdn ensemble t8.scores t16.scores

Videos are matched by id; a video missing from some file (unreadable in that evaluation) is
left out and counted. Prints top-1, top-5 and mean class accuracy of the fusion and of each
file; the last line is one JSON object. --save-scores writes the fused scores.
"""

from __future__ import annotations

import argparse

from .common import print_json_line, setup_logging
from .evaluate import FUSIONS


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "ensemble", help="fuse per-video scores saved by 'tdn evaluate --save-scores'",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scores", nargs="+", metavar="SCORES",
                        help="files written by 'tdn evaluate --save-scores'")
    parser.add_argument("--fuse", choices=FUSIONS, default="softmax",
                        help="mean of softmax probabilities (default) or of logits")
    parser.add_argument("--save-scores", default=None, metavar="FILE",
                        help="write the fused per-video scores")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from ..engine.evaluator import check_writable_file
    from ..engine.metrics import classification_report
    from ..engine.video_scores import VideoScores, fuse

    setup_logging()
    if args.save_scores:
        check_writable_file(args.save_scores, "--save-scores")
    parts = [VideoScores.load(path) for path in args.scores]
    fused, left_out = fuse(parts, args.fuse, args.scores)
    summary = _accuracies(classification_report(fused.scores, fused.labels))
    summary.update(videos=len(fused.videos), left_out=len(left_out), fuse=args.fuse,
                   files=[dict(file=path, num_segments=part.num_segments, views=part.views,
                               **_accuracies(classification_report(part.scores, part.labels)))
                          for path, part in zip(args.scores, parts)])
    for path, part in zip(args.scores, summary["files"]):
        print(f"{path}: top-1 {part['top1']:.2f}%  top-5 {part['top5']:.2f}%")
    note = f", {len(left_out)} left out (missing from some file)" if left_out else ""
    print(f"ensemble of {len(parts)} ({args.fuse}), {len(fused.videos)} videos{note}: "
          f"top-1 {summary['top1']:.2f}%  top-5 {summary['top5']:.2f}%  mean class accuracy "
          f"{summary['mean_class_accuracy']:.2f}%")
    if args.save_scores:
        fused.save(args.save_scores)
    print_json_line(summary)
    return 0


def _accuracies(report) -> dict:
    return dict(top1=report.top1, top5=report.top5,
                mean_class_accuracy=report.mean_class_accuracy)
