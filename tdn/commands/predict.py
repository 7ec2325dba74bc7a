"""``tdn predict VIDEO...``: the top-k classes of video files.

    tdn predict clip1.mp4 clip2.webm --checkpoint best.pt --class-names classes.txt --topk 5

Scores are softmax probabilities averaged over --clips x --crops views. A video that cannot
be read (missing, not a video, truncated) is reported on stderr and skipped, and the exit
status is 1 if any was. --json prints one JSON object per
video instead of text.
"""

from __future__ import annotations

import argparse
import json
import sys

from .common import (add_decoder_option, add_keep_memory_option, keep_memory_on_cpu,
                     positive_int, setup_logging)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict", help="top-k labels and scores for video files",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--class-names", default=None,
                        help="one class name per line (default: the names recorded by "
                             "'tdn train --class-names', else class indices)")
    parser.add_argument("--topk", type=positive_int, default=5)
    parser.add_argument("--arch", default=None, help="needed for checkpoints that do not record it")
    parser.add_argument("--num-classes", type=positive_int, default=None)
    parser.add_argument("--segments", type=positive_int, default=None)
    parser.add_argument("--input-size", type=positive_int, default=None,
                        help="default: the checkpoint's training size, else 224")
    parser.add_argument("--scale-size", type=positive_int, default=None)
    parser.add_argument("--clips", type=positive_int, default=1)
    parser.add_argument("--crops", type=int, choices=(1, 3), default=1)
    add_decoder_option(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--backend", default=None, help="tdn_ops backend")
    parser.add_argument("--json", action="store_true", help="one JSON object per video")
    add_keep_memory_option(parser)
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from ..data import read_class_names
    from ..engine.distributed import resolve_device
    from ..engine.modelio import checkpoint_class_names, load_model_for_inference
    from ..engine.predictor import predict_videos

    setup_logging()
    device = resolve_device(args.device)
    keep_memory_on_cpu(args, args.device)
    network, config = load_model_for_inference(args.checkpoint, args.arch, args.num_classes,
                                               args.segments, args.backend, device,
                                               optimize=True)
    names = (read_class_names(args.class_names) if args.class_names
             else checkpoint_class_names(args.checkpoint))
    if names is not None and len(names) != config["num_classes"]:
        raise SystemExit(f"--class-names lists {len(names)} names but the model has "
                         f"{config['num_classes']} classes")
    predictions = predict_videos(
        network, args.videos, num_segments=config["num_segments"],
        input_size=args.input_size or config["input_size"], scale_size=args.scale_size,
        clips=args.clips, crops=args.crops, topk=args.topk, class_names=names, device=device,
        decoder=args.decoder)
    for prediction in predictions:
        if args.json:
            print(json.dumps(prediction.as_dict()))
        elif prediction.error is not None:
            print(f"tdn predict: error: {prediction.video}: {prediction.error}", file=sys.stderr)
        else:
            ranked = "  ".join(f"{name} {score:.3f}" for _, name, score in prediction.top)
            print(f"{prediction.video}: {ranked}")
    return 1 if any(p.error is not None for p in predictions) else 0
