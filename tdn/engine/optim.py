"""Optimiser, learning-rate schedule and batch-norm modes of the authors' recipe
(docs/math.md §7)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

BN_MODES = ("train", "partial", "frozen")
_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def _batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def freeze_batch_norm_parameters(model: nn.Module, mode: str) -> None:
    """Stop gradients of the BN layers that ``mode`` freezes (call once, before DDP wraps the
    model, so DDP only tracks trained parameters).

    * ``train``: nothing frozen.
    * ``partial``: TSN's partial BN -- every BN after the first keeps its ImageNet statistics
      and affine parameters (useful when fine-tuning with small per-GPU batches).
    * ``frozen``: every BN is frozen (per-sample computation: the result no longer depends on
      how the batch is split over processes).
    """
    if mode not in BN_MODES:
        raise ValueError(f"bn mode must be one of {BN_MODES}, got {mode!r}")
    for position, layer in enumerate(_batch_norms(model)):
        if mode == "frozen" or (mode == "partial" and position > 0):
            for parameter in layer.parameters():
                parameter.requires_grad_(False)


def apply_batch_norm_mode(model: nn.Module, mode: str) -> None:
    """Put the frozen BN layers back in eval mode (call after every ``model.train()``)."""
    for position, layer in enumerate(_batch_norms(model)):
        if mode == "frozen" or (mode == "partial" and position > 0):
            layer.eval()


def parameter_groups(model: nn.Module, lr: float, weight_decay: float,
                     fc_lr5: bool = False) -> list[dict]:
    """TSN's optimisation policy: weights decay at ``weight_decay``; biases train at 2x the
    learning rate without decay; normalisation parameters without decay; with ``fc_lr5`` the
    classifier (``new_fc``) trains at 5x (weight) / 10x (bias), as when fine-tuning on a new
    dataset. Every group records its ``lr_mult`` so schedules can scale it."""
    groups: dict[str, dict] = {}

    def add(name: str, parameter: torch.Tensor, lr_mult: float, decay: float) -> None:
        group = groups.setdefault(name, {"params": [], "lr": lr * lr_mult, "lr_mult": lr_mult,
                                         "weight_decay": decay, "name": name})
        group["params"].append(parameter)

    norm_params = {id(p) for m in model.modules() if isinstance(m, _NORM_TYPES)
                   for p in m.parameters(recurse=False)}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        is_head = fc_lr5 and (name.startswith("new_fc.") or ".new_fc." in name)
        if id(parameter) in norm_params:
            add("norm", parameter, 1.0, 0.0)
        elif parameter.dim() <= 1:  # biases
            add("head_bias" if is_head else "bias", parameter, 10.0 if is_head else 2.0, 0.0)
        else:
            add("head_weight" if is_head else "weight", parameter, 5.0 if is_head else 1.0,
                weight_decay)
    return list(groups.values())


def build_optimizer(model: nn.Module, lr: float, momentum: float = 0.9,
                    weight_decay: float = 5e-4, fc_lr5: bool = False) -> torch.optim.SGD:
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    return torch.optim.SGD(parameter_groups(model, lr, weight_decay, fc_lr5), lr=lr,
                           momentum=momentum, weight_decay=weight_decay)


class WarmupStepSchedule:
    """Learning-rate factor at optimiser step ``s``: a linear warm-up from ``1/warmup_divisor``
    to 1 over ``warmup_epochs``, then ``gamma`` per milestone passed (milestones in epochs).
    A plain-attribute callable, so ``LambdaLR.state_dict()`` saves it."""

    def __init__(self, steps_per_epoch: int, milestones: Sequence[float], gamma: float = 0.1,
                 warmup_epochs: float = 0.0, warmup_divisor: float = 100.0):
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.steps_per_epoch = steps_per_epoch
        self.milestones = sorted(float(m) for m in milestones)
        self.gamma = gamma
        self.warmup_epochs = float(warmup_epochs)
        self.warmup_steps = int(math.ceil(warmup_epochs * steps_per_epoch))
        self.warmup_divisor = warmup_divisor

    def rebase(self, steps_per_epoch: int) -> None:
        """Count in steps of another length (a run resumed at an epoch boundary with another
        batch size, accumulation or process count); milestones stay in epochs."""
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        # schedules saved before warmup_epochs was recorded: recover it from the step count
        warmup_epochs = getattr(self, "warmup_epochs", self.warmup_steps / self.steps_per_epoch)
        self.steps_per_epoch = steps_per_epoch
        self.warmup_epochs = warmup_epochs
        self.warmup_steps = int(math.ceil(warmup_epochs * steps_per_epoch))

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            start = 1.0 / self.warmup_divisor
            return start + (1.0 - start) * step / self.warmup_steps
        epoch = step / self.steps_per_epoch
        passed = sum(1 for milestone in self.milestones if epoch >= milestone)
        return self.gamma ** passed


def build_scheduler(optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                    milestones: Sequence[float], gamma: float = 0.1,
                    warmup_epochs: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    schedule = WarmupStepSchedule(steps_per_epoch, milestones, gamma, warmup_epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def schedule_of(scheduler: torch.optim.lr_scheduler.LambdaLR) -> WarmupStepSchedule:
    """The schedule a :func:`build_scheduler` scheduler follows (the same for every group)."""
    return scheduler.lr_lambdas[0]


def epoch_start_lr(scheduler: torch.optim.lr_scheduler.LambdaLR, epoch: int,
                   group: int = 0) -> float:
    """The learning rate of group ``group`` at the first optimiser step of ``epoch`` (the
    lr the epoch trains at, after any warm-up)."""
    schedule = schedule_of(scheduler)
    return scheduler.base_lrs[group] * schedule(epoch * schedule.steps_per_epoch)


def rebase_scheduler(scheduler: torch.optim.lr_scheduler.LambdaLR, steps_per_epoch: int,
                     epochs_done: int) -> bool:
    """Continue a restored schedule at the start of epoch ``epochs_done`` with
    ``steps_per_epoch`` steps per epoch from now on. Returns whether anything changed."""
    schedule = schedule_of(scheduler)
    if schedule.steps_per_epoch == steps_per_epoch:
        return False
    for each in {id(f): f for f in scheduler.lr_lambdas}.values():
        each.rebase(steps_per_epoch)
    scheduler.last_epoch = epochs_done * steps_per_epoch
    lrs = [base * fn(scheduler.last_epoch)
           for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for group, lr in zip(scheduler.optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = lrs
    return True
