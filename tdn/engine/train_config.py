"""What ``tdn train`` can be told: one table of settings, their defaults and what they mean.

:class:`TrainConfig` is the single source of the training defaults: ``tdn train`` builds its
options from these fields (flag ``--name-with-dashes``, default, help text from the field's
``doc``), so a default is changed here and nowhere else. The defaults are the authors'
Something-Something recipe (docs/math.md §7) with a single process's batch.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..data.annotations import check_image_template
from ..data.recipe import MULTI_SCALE_CROP_SCALES


def setting(default: Any = dataclasses.MISSING, *, doc: str, **kwargs) -> Any:
    """A dataclass field documented by ``doc`` (what the value means, without its default)."""
    return field(default=default, metadata={"doc": doc}, **kwargs)


@dataclass
class TrainConfig:
    """Everything ``tdn train`` can be told (each field's ``doc`` is its help text)."""

    # data
    train_list: str = setting(doc="training annotation list")
    output: str = setting(doc="run folder: checkpoints, logs, curves (created)")
    arch: str = setting("tdn_resnet50", doc="model name from tdn.list_models()")
    val_list: str | None = setting(None, doc="validation annotation list")
    data_root: str | None = setting(None, doc="folder the paths of the lists are relative to")
    list_format: str = setting("auto", doc="'frames': 'path num_frames label' (frame folders); "
                               "'videos': 'path label' (video files); 'auto': by field count")
    image_template: str = setting("img_{:05d}.jpg", doc="frame file names inside frame folders "
                                  "(Something-Something V1 uses {:05d}.jpg)")
    first_frame_index: int = setting(1, doc="number of the first frame file")
    decoder: str = setting("auto", doc="video decoder: decord when installed, else PyAV")
    num_classes: int | None = setting(None, doc="default: from --class-names, else largest "
                                      "label + 1")
    class_names: str | None = setting(None, doc="file with one class name per line (line i = "
                                      "class i)")
    # model and input
    segments: int = setting(8, doc="T, the number of 5-frame snippets per clip")
    input_size: int = setting(224, doc="crop side")
    scale_size: int | None = setting(None, doc="validation short side before the centre crop "
                                     "(default size*256/224)")
    crop_scales: Sequence[float] = setting(MULTI_SCALE_CROP_SCALES,
                                           doc="multi-scale crop sides, as fractions of the "
                                               "short side")
    flip: bool = setting(True, doc="horizontal flip augmentation")
    flip_label_swaps: dict[int, int] = setting(
        doc="labels a horizontal flip swaps ({left label: right label})", default_factory=dict)
    # optimisation
    epochs: int = setting(60, doc="epochs to train")
    batch_size: int = setting(8, doc="clips per process and micro-batch")
    val_batch_size: int | None = setting(None, doc="validation clips per process (default: "
                                         "--batch-size)")
    lr: float = setting(0.01, doc="learning rate of the global batch")
    scale_lr: bool = setting(False, doc="linear scaling rule: train at lr x global batch / "
                             "--lr-reference-batch (global batch = processes x batch x "
                             "accumulation); the lr used is logged")
    lr_reference_batch: int = setting(64, doc="the global batch --lr is meant for, with "
                                      "--scale-lr (the authors': 8 GPUs x 8 clips)")
    lr_steps: Sequence[float] = setting((30, 45, 55), doc="epochs at which the lr is "
                                        "multiplied by --lr-gamma")
    lr_gamma: float = setting(0.1, doc="lr factor at each step")
    warmup_epochs: float = setting(0.0, doc="linear warm-up from lr/100 (0 in the authors' "
                                   "scripts)")
    momentum: float = setting(0.9, doc="SGD momentum")
    weight_decay: float = setting(5e-4, doc="L2 weight decay")
    clip_grad_norm: float | None = setting(20.0, doc="gradient-norm clipping (None: off)")
    dropout: float = setting(0.5, doc="dropout before new_fc")
    bn_mode: str = setting("train", doc="'partial': TSN's partial BN (only the first BN "
                           "trains); 'frozen': no BN trains")
    sync_bn: bool = setting(False, doc="SyncBatchNorm across GPUs")
    fc_lr5: bool = setting(False, doc="new_fc at 5x (weight) / 10x (bias) lr, for fine-tuning")
    pretrained: str | None = setting(None, doc="ImageNet ResNet weights or a TDN checkpoint to "
                                     "start from")
    init_from: str | None = setting(None, doc="a checkpoint whose model weights start the run "
                                    "(training state, model file or the authors'; not its "
                                    "optimiser)")
    backbone_only: bool = setting(False, doc="with --init-from: load everything except the "
                                  "classifier new_fc (fine-tuning to another class count)")
    # runtime
    backend: str | None = setting(None, doc="tdn_ops backend of TDN's fused operators (auto, "
                                  "cpu, cuda, triton, reference)")
    amp: bool = setting(False, doc="mixed precision (float16 + grad scaler on GPU, bfloat16 on "
                        "CPU)")
    channels_last: bool = setting(False, doc="channels_last memory format for model and "
                                  "inputs")
    accumulate: int = setting(1, doc="micro-batches per optimiser step")
    workers: int = setting(4, doc="DataLoader workers")
    device: str = setting("auto", doc="auto (GPU if available), cpu, cuda or cuda:N")
    seed: int = setting(0, doc="seed of data order, augmentation and initialisation")
    # run
    resume: str | None = setting(None, doc="checkpoint_last.pt to continue from ('auto': the "
                                 "one in the output folder, if any)")
    eval_every: int = setting(1, doc="epochs between validations")
    checkpoint_every: int = setting(0, doc="also save checkpoint_last.pt every that many "
                                    "optimiser steps inside epochs (0: at epoch ends only)")
    stop_after_steps: int = setting(0, doc="save and stop after that many optimiser steps of "
                                    "this invocation (0: never; for time-limited jobs)")
    overwrite: bool = setting(False, doc="replace the previous run in --output (without it, a "
                              "folder holding a run is refused unless --resume continues it)")
    progress: bool = setting(True, doc="progress bars")

    def validate(self) -> None:
        """Refuse settings that cannot train, naming the flag: counts out of range, numbers
        that are not finite (``--lr nan`` would turn every weight into NaN), missing lists."""
        for name in ("segments", "input_size", "epochs", "batch_size", "accumulate",
                     "eval_every", "lr_reference_batch"):
            _check_number(self, name, minimum=1)
        for name in ("workers", "checkpoint_every", "stop_after_steps"):
            _check_number(self, name, minimum=0)
        for name in ("num_classes", "scale_size", "val_batch_size"):
            if getattr(self, name) is not None:
                _check_number(self, name, minimum=1)
        _check_number(self, "lr", minimum=0, inclusive=False)
        _check_number(self, "lr_gamma", minimum=0, inclusive=False)
        for name in ("warmup_epochs", "momentum", "weight_decay"):
            _check_number(self, name, minimum=0)
        _check_number(self, "dropout", minimum=0, maximum=1, inclusive_maximum=False)
        if self.clip_grad_norm is not None:
            _check_number(self, "clip_grad_norm", minimum=0, inclusive=False,
                          note=" (0 on the command line turns it off)")
        for value in self.lr_steps:
            _check_number(self, "lr_steps", value=value, minimum=0)
        if not self.crop_scales:
            raise ValueError("--crop-scales needs at least one value")
        for value in self.crop_scales:
            _check_number(self, "crop_scales", value=value, minimum=0, inclusive=False,
                          maximum=1)
        for left, right in self.flip_label_swaps.items():
            if left < 0 or right < 0:
                raise ValueError(f"--flip-label-swaps: labels are >= 0, got {left}:{right}")
        check_image_template(self.image_template, "--image-template")
        if self.backbone_only and not self.init_from:
            raise ValueError("--backbone-only applies to --init-from CKPT, which is not given")
        if not os.path.isfile(self.train_list):
            raise FileNotFoundError(f"train list not found: {self.train_list}")
        if self.val_list is not None and not os.path.isfile(self.val_list):
            raise FileNotFoundError(f"val list not found: {self.val_list}")
        if self.init_from is not None and not os.path.isfile(self.init_from):
            raise FileNotFoundError(f"--init-from: checkpoint not found: {self.init_from}")

    def global_batch(self, world_size: int = 1) -> int:
        """Clips per optimiser step over all processes."""
        return world_size * self.batch_size * self.accumulate

    def effective_lr(self, world_size: int = 1) -> float:
        """The learning rate the run trains at: ``lr``, or with ``scale_lr`` the linear rule
        ``lr * global batch / lr_reference_batch``."""
        if not self.scale_lr:
            return self.lr
        return self.lr * self.global_batch(world_size) / self.lr_reference_batch

    def as_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["crop_scales"] = list(self.crop_scales)
        values["lr_steps"] = list(self.lr_steps)
        values["flip_label_swaps"] = {str(k): v for k, v in self.flip_label_swaps.items()}
        return values


def flag(name: str) -> str:
    """The command-line spelling of a TrainConfig field."""
    return "--" + name.replace("_", "-")


def _check_number(config: TrainConfig, name: str, *, value: Any = None, minimum: float,
                  inclusive: bool = True, maximum: float | None = None,
                  inclusive_maximum: bool = True, note: str = "") -> None:
    value = getattr(config, name) if value is None else value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{flag(name)} must be a number, got {value!r}")
    low_ok = value >= minimum if inclusive else value > minimum
    high_ok = maximum is None or (value <= maximum if inclusive_maximum else value < maximum)
    if not (math.isfinite(value) and low_ok and high_ok):
        low = f"{'>=' if inclusive else '>'} {minimum:g}"
        high = "" if maximum is None else f" and {'<=' if inclusive_maximum else '<'} {maximum:g}"
        kind = "an integer" if isinstance(value, int) else "a finite number"
        raise ValueError(f"{flag(name)} must be {kind} {low}{high}, got {value}{note}")
