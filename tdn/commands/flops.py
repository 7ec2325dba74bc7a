"""``tdn flops``: multiply-accumulates and parameters of a model, per clip.

Counted on the meta device (instant, no memory), with the convention the TDN paper's numbers
follow (convolutions and classifier MACs, plus nearest upsampling and global pooling; batch
norm, activations and elementwise ops not counted: see ``tdn.flops``). Also prints the plain
TSN with the same backbone and frames, and the ratio.

  tdn flops --arch tdn_resnet50 --segments 8 --size 224
"""

from __future__ import annotations

import argparse
import json

from .common import positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "flops", help="MACs and parameters of a model (and its TSN baseline)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="tdn_resnet50", help="model name (tdn list: "
                        "tdn_resnet18/34/50/101, tsn_resnet18/34/50/101)")
    parser.add_argument("--segments", type=positive_int, default=8, help="T (default 8)")
    parser.add_argument("--size", type=positive_int, default=224,
                        help="frame height and width (default 224)")
    parser.add_argument("--num-classes", type=positive_int, default=174,
                        help="classifier width (default 174)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from ..flops import AUTHORS_UNUSED_PARAMS, baseline_arch, measure

    cost = measure(args.arch, args.segments, args.size, args.num_classes)
    base_name = baseline_arch(args.arch)
    base = measure(base_name, args.segments, args.size, args.num_classes) if base_name else None
    result = {
        "arch": cost.arch, "segments": cost.num_segments, "size": cost.size,
        "num_classes": cost.num_classes, "gmacs": round(cost.macs.gmacs, 4),
        "gmacs_per_segment": round(cost.macs_per_segment / 1e9, 4),
        "gmacs_by_category": {k: round(v / 1e9, 4) for k, v in cost.macs.by_category.items()},
        "params": cost.params, "authors_params": cost.authors_params,
    }
    if base is not None:
        result.update(baseline=base.arch, baseline_gmacs=round(base.macs.gmacs, 4),
                      ratio_to_baseline=round(cost.macs.total / base.macs.total, 4))
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{cost.arch}, {cost.num_segments} segments, {cost.size}x{cost.size}, "
          f"{cost.num_classes} classes, one clip")
    print(f"  MACs:       {cost.macs.gmacs:.2f} G "
          f"({cost.macs_per_segment / 1e9:.2f} G per segment)")
    print("              " + ", ".join(f"{k} {v / 1e9:.4f} G" for k, v in
                                         sorted(cost.macs.by_category.items()) if v))
    print(f"  parameters: {cost.params / 1e6:.2f} M ({cost.params:,})")
    if cost.authors_params is not None:
        print(f"              {cost.authors_params / 1e6:.2f} M in the authors' implementation, "
              f"which also holds an unused conv1_temp ({AUTHORS_UNUSED_PARAMS:,}) not built here")
    if base is not None:
        print(f"  {base.arch} on the same frames: {base.macs.gmacs:.2f} G "
              f"({base.macs_per_segment / 1e9:.2f} G per frame); "
              f"{cost.arch} costs {result['ratio_to_baseline']:.2f}x")
    return 0
