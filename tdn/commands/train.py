"""``tdn train``: train a TDN (or TSN) model on annotation lists, on one or many processes.

Single process:   tdn train --train-list train.txt --val-list val.txt --data-root DATA \
                      --arch tdn_resnet50 --segments 8 --output runs/sth
Several GPUs:     torchrun --nproc-per-node 8 -m tdn train ... (NCCL; gloo on CPUs)
Several machines: torchrun --nnodes 2 --node-rank R --rdzv-endpoint HOST:PORT ... -m tdn train ...

``--batch-size`` is per process; ``--lr`` is the learning rate of the global batch
(processes x batch x accumulation), used as given unless ``--scale-lr`` applies the linear
rule (lr x global batch / --lr-reference-batch; the lr used is logged).

A folder that holds a run is never replaced silently: continue it with ``--resume``, or pass
``--overwrite``. ``--init-from CKPT --backbone-only`` fine-tunes a checkpoint's backbone
for another class count.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from ..engine.train_config import TrainConfig
from ..fileio import check_writable_folder
from .common import (DATA_OPTIONS, RUNTIME_OPTIONS, add_settings, positive_int, print_json_line,
                     setup_logging)

# The authors' recipes (docs/math.md §7; 8 GPUs x batch 8 / 16), as changes to TrainConfig's
# defaults (which are the Something-Something recipe without the flip label swaps). Values are
# written as on the command line; explicit flags override them.
PRESETS = {
    "something": dict(flip_label_swaps="something"),
    "kinetics": dict(lr=0.02, lr_steps=[50, 75, 90], epochs=100, weight_decay=1e-4,
                     batch_size=16, lr_reference_batch=128),
}

# How each TrainConfig field is given on the command line, by help group, in the order
# ``tdn train --help`` shows them: argparse keywords besides the default and the help, which
# come from the field (see common.add_settings).
OPTIONS = {
    None: {
        "train_list": dict(required=True),
        "val_list": {},
        "output": dict(required=True),
    },
    "model": {
        "arch": {},
        "segments": dict(type=positive_int),
        "num_classes": dict(type=positive_int),
        "dropout": dict(type=float),
        "pretrained": {},
        "init_from": dict(metavar="CKPT"),
        "backbone_only": dict(action="store_true"),
        "bn_mode": dict(choices=("train", "partial", "frozen")),
        "sync_bn": dict(action="store_true"),
    },
    "optimisation": {
        "epochs": dict(type=positive_int),
        "batch_size": dict(type=positive_int),
        "lr": dict(type=float),
        "scale_lr": dict(action="store_true"),
        "lr_reference_batch": dict(type=positive_int),
        "lr_steps": dict(type=float, nargs="+"),
        "lr_gamma": dict(type=float),
        "warmup_epochs": dict(type=float),
        "momentum": dict(type=float),
        "weight_decay": dict(type=float),
        "clip_grad_norm": dict(type=float, help="gradient-norm clipping (0 disables)"),
        "fc_lr5": dict(action="store_true"),
        "accumulate": dict(type=positive_int),
        "seed": dict(type=int),
    },
    "augmentation": {
        "input_size": dict(type=positive_int),
        "scale_size": dict(type=positive_int),
        "crop_scales": dict(type=float, nargs="+"),
        "flip": dict(flags=["--no-flip"], action="store_false", help="no horizontal flip"),
        "flip_label_swaps": dict(help="labels swapped by a flip: 'something' (86<->87, "
                                      "93<->94, 166<->167) or pairs like '0:1,5:6'"),
    },
    "data": DATA_OPTIONS,
    "run": {
        "resume": dict(nargs="?", const="auto",
                       help="continue from a checkpoint_last.pt (no value: the one in "
                            "--output, if any)"),
        "overwrite": dict(action="store_true"),
        "eval_every": dict(type=positive_int),
        "checkpoint_every": dict(type=int, metavar="STEPS"),
        "stop_after_steps": dict(type=int, metavar="STEPS"),
        "val_batch_size": dict(type=positive_int),
    },
    "runtime": RUNTIME_OPTIONS,
}
# Extra spellings of an option: --partial-bn is --bn-mode partial.
ALIASES = {"model": [("--partial-bn", dict(dest="bn_mode", action="store_const",
                                           const="partial", help="same as --bn-mode partial"))]}


def _command_line_value(name: str, value):
    """A TrainConfig default as the command line spells it (the inverse of _config_value)."""
    if name == "flip_label_swaps":
        return ",".join(f"{a}:{b}" for a, b in value.items())
    if name == "clip_grad_norm" and value is None:
        return 0.0
    if isinstance(value, tuple):
        return list(value)
    return value


def _config_value(name: str, value):
    """A parsed command-line value as TrainConfig holds it."""
    if name == "flip_label_swaps":
        from ..data.transforms import parse_label_swaps  # torch: only once a run starts

        try:
            return parse_label_swaps(value)
        except ValueError as e:
            raise ValueError(f"--flip-label-swaps: {e}") from None
    if name == "clip_grad_norm":
        return value if value > 0 else None
    if name in ("crop_scales", "lr_steps"):
        return tuple(value)
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", help="train a model on annotated videos (single process or torchrun/DDP)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for title, options in OPTIONS.items():
        group = parser if title is None else parser.add_argument_group(title)
        add_settings(group, options, TrainConfig, command_line_value=_command_line_value)
        for flag, keywords in ALIASES.get(title, []):
            group.add_argument(flag, **keywords)
        if title is None:
            parser.add_presets(PRESETS, help="the authors' recipe for Something-Something or "
                                             "Kinetics-400 (explicit flags override it)")
    parser.set_defaults(func=run)
    return parser


def config_from_args(args) -> TrainConfig:
    """The TrainConfig of a parsed ``tdn train`` command line."""
    return TrainConfig(**{spec.name: _config_value(spec.name, getattr(args, spec.name))
                          for spec in dataclasses.fields(TrainConfig)})


def run(args) -> int:
    from ..engine.trainer import run_training

    config = config_from_args(args)
    config.validate()  # a bad flag is refused before the output folder or its log exist
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:  # before the log file goes there, and long before any work
        check_writable_folder(config.output, "--output")
    setup_logging(rank, os.path.join(config.output, "train.log"))
    summary = run_training(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print_json_line(summary)
    return 0
