"""``tdn export``: a checkpoint as an ONNX file, a ``torch.export`` archive or an AOTI package.

    tdn export --checkpoint best.safetensors --format onnx --output tdn.onnx
    tdn export --checkpoint TDN_sth_r50_8f.pth.tar --format pt2 --segments 8 --output tdn.pt2

The file is loaded back and run on a random clip before the command returns; the difference
of its logits from PyTorch's is printed (and must be within 1e-4, relative). ONNX files use
standard operators only (opset 18) and run in onnxruntime without tdn installed; pt2 and aoti
files keep the fused operators and load where ``tdn_ops`` is importable. ``--batch dynamic``
(the default) lets the file take any number of clips.
"""

from __future__ import annotations

import argparse
import sys


def _batch(text: str) -> str:
    if text != "dynamic" and not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"must be 'dynamic' or a positive integer, got {text!r}")
    return text


def add_parser(subparsers) -> argparse.ArgumentParser:
    from .common import positive_int

    parser = subparsers.add_parser(
        "export", help="write a verified ONNX / torch.export / AOTInductor file of a checkpoint",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="this project's checkpoint or the authors' released one")
    # Formats and graphs are checked by tdn.deploy, whose error is one line.
    parser.add_argument("--format", required=True,
                        help="onnx (onnxruntime), pt2 (torch.export.load) or aoti "
                             "(AOTInductor, compiled for this CPU; slow to build)")
    parser.add_argument("--output", required=True, help="the file to write")
    parser.add_argument("--segments", type=positive_int, default=None,
                        help="T (default: the checkpoint's, 8 for the authors' files)")
    parser.add_argument("--input-size", type=positive_int, default=None,
                        help="frame side (default: the checkpoint's training size, else 224)")
    parser.add_argument("--batch", type=_batch, default="dynamic",
                        help="'dynamic' (any N, the default) or a fixed N")
    parser.add_argument("--graph", default="auto",
                        help="fused operators (translated to standard ONNX ops for onnx) or "
                             "the authors' reference decomposition (default: auto)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from ..deploy import ExportError, export_checkpoint

    try:
        report = export_checkpoint(args.checkpoint, args.format, args.output,
                                   segments=args.segments, input_size=args.input_size,
                                   batch=args.batch, graph=args.graph)
    except ExportError as e:
        print(f"tdn export: {e}", file=sys.stderr)
        return 1
    except ImportError as e:
        raise ValueError(str(e)) from e
    print(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``tdn export ARGS`` as a function."""
    from ..cli import main as cli_main

    return cli_main(["export", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
