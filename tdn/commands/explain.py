"""``tdn explain VIDEO``: where the model looks, one Grad-CAM heat map per segment.

    tdn explain clip.mp4 --checkpoint best.safetensors --output explain_out/
    tdn explain clip.mp4 --checkpoint best.safetensors --class moving_left --method gradcam++

Writes explain.png (each segment's centre frame under its heat map; class and score in the
title), explain.gif (every sampled frame) and cam.npy ((T, S, S) float32 in [0, 1], one scale
for the whole clip) to --output, and prints the top-k classes. The maps explain the
predicted class unless --class names one (an index, or a name from --class-names or from the
checkpoint). --layer takes a name from model.named_modules() (default: the last block of
layer 4).
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    from .common import positive_int

    parser = subparsers.add_parser(
        "explain", help="per-segment Grad-CAM heat maps of a video (png, gif, npy)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", metavar="VIDEO", help="a video file")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--output", required=True, help="folder for the files (created)")
    parser.add_argument("--class", dest="target", default=None, metavar="NAME|INDEX",
                        help="the class to explain (default: the predicted one)")
    parser.add_argument("--class-names", default=None, help="one class name per line")
    parser.add_argument("--layer", default=None,
                        help="module name, e.g. base_model.layer4_bak.1 (default: last block "
                             "of layer 4)")
    parser.add_argument("--method", choices=("gradcam", "gradcam++"), default="gradcam")
    parser.add_argument("--segments", type=positive_int, default=None,
                        help="T (default: the checkpoint's)")
    parser.add_argument("--input-size", type=positive_int, default=None,
                        help="default: the checkpoint's training size, else 224")
    parser.add_argument("--topk", type=positive_int, default=5)
    parser.add_argument("--decoder", choices=("auto", "pyav", "decord"), default="auto")
    parser.set_defaults(func=run)
    return parser


def _class_names(args) -> list[str] | None:
    from ..data import read_class_names
    from ..engine.modelio import checkpoint_class_names

    if args.class_names:
        return read_class_names(args.class_names)
    return checkpoint_class_names(args.checkpoint)  # recorded by 'tdn train --class-names'


def run(args) -> int:
    from ..data import FrameReadError
    from ..explain import explain_video
    from ..models.factory import load_model_and_metadata

    model, metadata = load_model_and_metadata(args.checkpoint, num_segments=args.segments)
    names = _class_names(args)
    size = args.input_size or int(metadata.get("input_size", 224))
    try:
        result = explain_video(model, args.video, args.output, input_size=size,
                               target=args.target, layer=args.layer, method=args.method,
                               class_names=names, topk=args.topk, decoder=args.decoder)
    except FrameReadError as e:
        raise ValueError(f"cannot read the video: {e}") from e
    ranked = "  ".join(f"{name} {score:.3f}" for _, name, score in result.top)
    print(f"{args.video}: {ranked}")
    print(f"explained {result.class_name} ({result.score:.3f}) with {result.method} on "
          f"{result.layer}: " + ", ".join(str(p) for p in result.files.values()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``tdn explain ARGS`` as a function."""
    from ..cli import main as cli_main

    return cli_main(["explain", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
