"""``tdn train``: train a TDN (or TSN) model on annotation lists, on one or many processes.

Single process:   tdn train --train-list train.txt --val-list val.txt --data-root DATA \
                      --arch tdn_resnet50 --segments 8 --output runs/sth
Several GPUs:     torchrun --nproc-per-node 8 -m tdn train ... (NCCL; gloo on CPUs)
Several machines: torchrun --nnodes 2 --node-rank R --rdzv-endpoint HOST:PORT ... -m tdn train ...

``--batch-size`` is per process; ``--lr`` is the learning rate of the global batch
(processes x batch x accumulation) and is not rescaled automatically.
"""

from __future__ import annotations

import argparse
import os

PRESETS = {
    # SPEC section 7, the authors' recipes (8 GPUs x batch 8 / 16)
    "something": dict(lr=0.01, lr_steps=[30, 45, 55], epochs=60, weight_decay=5e-4,
                      batch_size=8, flip_label_swaps="something"),
    "kinetics": dict(lr=0.02, lr_steps=[50, 75, 90], epochs=100, weight_decay=1e-4,
                     batch_size=16, flip_label_swaps=""),
}
DEFAULTS = dict(PRESETS["something"], flip_label_swaps="")


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..engine.cli_support import add_data_options, add_runtime_options, positive_int

    parser = subparsers.add_parser(
        "train", help="train a model on annotated videos (single process or torchrun/DDP)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-list", required=True, help="training annotation list")
    parser.add_argument("--val-list", default=None, help="validation annotation list")
    parser.add_argument("--output", required=True,
                        help="run folder: checkpoints, logs, curves (created)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="the authors' recipe for Something-Something or Kinetics-400 "
                             "(explicit flags override it)")
    model = parser.add_argument_group("model")
    model.add_argument("--arch", default="tdn_resnet50",
                       help="model name from tdn.list_models() (default tdn_resnet50)")
    model.add_argument("--segments", type=positive_int, default=8, help="T (default 8)")
    model.add_argument("--num-classes", type=positive_int, default=None,
                       help="default: from --class-names, else largest label + 1")
    model.add_argument("--dropout", type=float, default=0.5, help="before new_fc (default 0.5)")
    model.add_argument("--pretrained", default=None,
                       help="ImageNet ResNet weights or a TDN checkpoint to start from")
    model.add_argument("--bn-mode", choices=("train", "partial", "frozen"), default="train",
                       help="'partial': TSN's partial BN (only the first BN trains); 'frozen': "
                            "no BN trains (default train)")
    model.add_argument("--partial-bn", dest="bn_mode", action="store_const", const="partial",
                       help="same as --bn-mode partial")
    model.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across GPUs")
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=positive_int, default=None, help="default 60")
    optim.add_argument("--batch-size", type=positive_int, default=None,
                       help="per process (default 8)")
    optim.add_argument("--lr", type=float, default=None, help="default 0.01")
    optim.add_argument("--lr-steps", type=float, nargs="+", default=None,
                       help="epochs at which the lr is multiplied by --lr-gamma (default 30 45 55)")
    optim.add_argument("--lr-gamma", type=float, default=0.1)
    optim.add_argument("--warmup-epochs", type=float, default=0.0,
                       help="linear warm-up from lr/100 (default 0, as the authors' scripts)")
    optim.add_argument("--momentum", type=float, default=0.9)
    optim.add_argument("--weight-decay", type=float, default=None, help="default 5e-4")
    optim.add_argument("--clip-grad-norm", type=float, default=20.0,
                       help="gradient-norm clipping (default 20; 0 disables)")
    optim.add_argument("--fc-lr5", action="store_true",
                       help="new_fc at 5x (weight) / 10x (bias) lr, for fine-tuning")
    optim.add_argument("--accumulate", type=positive_int, default=1,
                       help="micro-batches per optimiser step (default 1)")
    optim.add_argument("--seed", type=int, default=0)
    aug = parser.add_argument_group("augmentation")
    aug.add_argument("--input-size", type=positive_int, default=224, help="crop side (default 224)")
    aug.add_argument("--scale-size", type=positive_int, default=None,
                     help="validation short side before the centre crop (default size*256/224)")
    aug.add_argument("--crop-scales", type=float, nargs="+", default=[1.0, 0.875, 0.75, 0.66])
    aug.add_argument("--no-flip", dest="flip", action="store_false",
                     help="no horizontal flip")
    aug.add_argument("--flip-label-swaps", default=None,
                     help="labels swapped by a flip: 'something' (86<->87, 93<->94, 166<->167) "
                          "or pairs like '0:1,5:6'")
    add_data_options(parser)
    session = parser.add_argument_group("run")
    session.add_argument("--resume", nargs="?", const="auto", default=None,
                     help="continue from a checkpoint_last.pt (no value: the one in --output, "
                          "if any)")
    session.add_argument("--eval-every", type=positive_int, default=1,
                         help="epochs between validations")
    session.add_argument("--checkpoint-every", type=int, default=0, metavar="STEPS",
                         help="also save checkpoint_last.pt every STEPS optimiser steps inside "
                              "epochs (default 0: at epoch ends only)")
    session.add_argument("--stop-after-steps", type=int, default=0, metavar="STEPS",
                         help="save and stop after STEPS optimiser steps of this invocation "
                              "(for time-limited jobs; continue with --resume)")
    session.add_argument("--val-batch-size", type=positive_int, default=None)
    add_runtime_options(parser)
    parser.set_defaults(func=run)
    return parser


def config_from_args(args):
    from ..data.transforms import parse_label_swaps
    from ..engine.trainer import TrainConfig

    chosen = dict(DEFAULTS, **(PRESETS[args.preset] if args.preset else {}))
    for key in chosen:
        if getattr(args, key, None) is not None:
            chosen[key] = getattr(args, key)
    return TrainConfig(
        train_list=args.train_list, val_list=args.val_list, output=args.output, arch=args.arch,
        data_root=args.data_root, list_format=args.list_format,
        image_template=args.image_template, first_frame_index=args.first_frame_index,
        decoder=args.decoder, num_classes=args.num_classes, class_names=args.class_names,
        segments=args.segments, input_size=args.input_size, scale_size=args.scale_size,
        crop_scales=tuple(args.crop_scales), flip=args.flip,
        flip_label_swaps=parse_label_swaps(chosen["flip_label_swaps"]),
        epochs=chosen["epochs"], batch_size=chosen["batch_size"],
        val_batch_size=args.val_batch_size, lr=chosen["lr"], lr_steps=tuple(chosen["lr_steps"]),
        lr_gamma=args.lr_gamma, warmup_epochs=args.warmup_epochs, momentum=args.momentum,
        weight_decay=chosen["weight_decay"],
        clip_grad_norm=args.clip_grad_norm if args.clip_grad_norm > 0 else None,
        dropout=args.dropout, bn_mode=args.bn_mode, sync_bn=args.sync_bn, fc_lr5=args.fc_lr5,
        pretrained=args.pretrained, backend=args.backend, amp=args.amp,
        channels_last=args.channels_last, accumulate=args.accumulate, workers=args.workers,
        device=args.device, seed=args.seed, resume=args.resume, eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every, stop_after_steps=args.stop_after_steps,
        progress=args.progress)


def run(args) -> int:
    from ..engine.cli_support import print_json_line, setup_logging
    from ..engine.trainer import run_training

    config = config_from_args(args)
    setup_logging(int(os.environ.get("RANK", "0")), os.path.join(config.output, "train.log"))
    summary = run_training(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print_json_line(summary)
    return 0
