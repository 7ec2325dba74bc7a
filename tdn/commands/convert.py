"""``tdn convert IN OUT``: rewrite an authors' TDN checkpoint as a project checkpoint.

IN is a released ``.pth.tar`` (keys ``module.base_model.*``, ``module.new_fc.*``, or the same
with prefixes stripped); OUT gets a safetensors file (a torch file if it ends in .pt/.pth)
holding our state dict and the metadata (arch, num_classes, num_segments) that
``tdn evaluate``/``tdn predict``/``tdn.load_model`` rebuild the model from. The architecture
and class count are read from the weights; the authors' files do not record T, so give
--segments for 16-frame models. The unused ``conv1_temp`` is dropped. Nothing is written unless
the weights load strictly into the model.

  tdn convert tdn_sthv2_r50_8x1x1.pth.tar tdn_sthv2_r50_8f.safetensors
  tdn convert tdn_k400_r101_16f.pth.tar tdn_k400_r101_16f.safetensors --segments 16
"""

from __future__ import annotations

import argparse

from .common import positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert", help="authors' checkpoint -> project checkpoint (safetensors + metadata)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", metavar="IN", help="authors' checkpoint (.pth / .pth.tar)")
    parser.add_argument("output", metavar="OUT", help="where to write (.safetensors)")
    parser.add_argument("--segments", type=positive_int, default=None,
                        help="T the model was trained with (default 8; not stored in the "
                             "authors' files)")
    parser.add_argument("--arch", default=None,
                        help="architecture (default: inferred from the weights)")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from ..models.factory import convert_checkpoint

    meta = convert_checkpoint(args.input, args.output, num_segments=args.segments,
                              arch=args.arch)
    print(f"wrote {args.output}: {meta['arch']}, {meta['num_classes']} classes, "
          f"{meta['num_segments']} segments (alpha={meta.get('alpha')}, beta={meta.get('beta')})")
    return 0
