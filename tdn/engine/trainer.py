"""The training loop behind ``tdn train``: one process or many (torchrun + DDP).

Every epoch: train on this rank's shard, validate (metrics summed over ranks), then rank 0
writes ``checkpoint_last.pt`` (and ``checkpoint_best.pt`` when validation top-1 improves),
``log.csv``, ``log.json`` and ``curves.png``; ``checkpoint_every`` adds mid-epoch saves every
that many optimiser steps. ``resume`` restores model, optimiser, schedule, grad scaler,
epoch (and position inside it), history, partial metrics and every rank's random generators;
data order and augmentation are functions of (seed, epoch, item), so a resumed run continues
with the same numbers an uninterrupted run would have produced.

What the loop refuses rather than do silently wrong: a run folder that holds another run
(:mod:`tdn.engine.run_folder`), resume settings that the checkpoint overrides without saying
so (:mod:`tdn.engine.resume_settings`), a non-finite loss (:class:`TrainingDiverged`, unless
the AMP grad scaler skips the step), and an epoch or validation pass without a readable item.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint_io import CheckpointError
from ..data import (EvalTransform, TrainTransform, VideoDataset, build_loader,
                    read_annotation_list, read_class_names)
from ..fileio import atomic_torch_save, atomic_write_text, check_writable_folder
from ..models.factory import load_checkpoint
from . import run_folder, training_state
from .batches import batch_to_input
from .distributed import (DistributedContext, all_ranks_true, average_gradients, barrier,
                          gather_objects, setup_distributed, teardown_distributed)
from .metrics import RunningMetrics
from .modelio import build_from_config, model_config, training_metadata
from .optim import (apply_batch_norm_mode, build_optimizer, build_scheduler, epoch_start_lr,
                    freeze_batch_norm_parameters, rebase_scheduler)
from .reporting import curves_available, plot_curves, write_history
from .resume_settings import reconcile
from .train_config import TrainConfig

# Above this fraction of unreadable items in an epoch, the metrics describe a different data
# set than the list: the run says so loudly.
SKIPPED_WARNING_FRACTION = 0.05


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite (without a grad scaler to skip the step)."""

log = logging.getLogger("tdn")


# ----------------------------------------------------------------------------- data
@dataclass
class TrainingData:
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader | None
    num_classes: int
    class_names: list[str] | None


def prepare_data(config: TrainConfig, context: DistributedContext) -> TrainingData:
    train_records = read_annotation_list(config.train_list, config.data_root, config.list_format)
    val_records = (read_annotation_list(config.val_list, config.data_root, config.list_format)
                   if config.val_list else None)
    class_names = read_class_names(config.class_names) if config.class_names else None
    largest_label = max(r.label for r in train_records + (val_records or []))
    num_classes = config.num_classes or (len(class_names) if class_names else largest_label + 1)
    if largest_label >= num_classes:
        raise ValueError(f"label {largest_label} found in the lists but num_classes is "
                         f"{num_classes}")
    outside = sorted(label for pair in config.flip_label_swaps.items() for label in pair
                     if label >= num_classes)
    if outside:
        raise ValueError(f"--flip-label-swaps: label {outside[0]} is not one of the "
                         f"{num_classes} classes (0..{num_classes - 1})")
    common = dict(num_segments=config.segments, image_template=config.image_template,
                  first_frame_index=config.first_frame_index, decoder=config.decoder)
    train_set = VideoDataset(
        train_records, transform=TrainTransform(config.input_size, config.crop_scales,
                                                config.flip, config.flip_label_swaps),
        mode="train", **common)
    pin = context.device.type == "cuda"
    train_loader = build_loader(train_set, config.batch_size, train=True,
                                num_replicas=context.world_size, rank=context.rank,
                                seed=config.seed, workers=config.workers, pin_memory=pin)
    val_loader = None
    if val_records:
        val_set = VideoDataset(val_records, transform=EvalTransform(config.input_size,
                                                                    config.scale_size),
                               mode="val", **common)
        val_loader = build_loader(val_set, config.val_batch_size or config.batch_size,
                                  train=False, num_replicas=context.world_size,
                                  rank=context.rank, workers=config.workers, pin_memory=pin)
    return TrainingData(train_loader, val_loader, num_classes, class_names)


class SkipReporter:
    """Logs each unreadable item once (rank, path, reason) and counts skips per epoch."""

    def __init__(self, context: DistributedContext):
        self.context = context
        self.reported: set[str] = set()
        self.count = 0

    def __call__(self, skipped) -> None:
        for item in skipped:
            self.count += 1
            if item.path not in self.reported:
                self.reported.add(item.path)
                log.warning("[rank %d] skipping unreadable item %s: %s", self.context.rank,
                            item.path, item.reason)

    def take(self) -> int:
        count, self.count = self.count, 0
        return count


# ----------------------------------------------------------------------------- model
def autocast(device: torch.device, enabled: bool):
    """Mixed precision: float16 on GPUs (with a grad scaler), bfloat16 on CPUs."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


def build_training_model(config: TrainConfig, num_classes: int, context: DistributedContext,
                         initialise: bool = True) -> tuple[nn.Module, nn.Module]:
    """(the network, what to call in the loop: the network or its DDP wrapper).
    ``initialise=False`` (a resume, whose checkpoint replaces the weights) skips
    ``--init-from``."""
    try:
        network = build_from_config(
            model_config(config.arch, num_classes, config.segments, config.dropout,
                         config.input_size),
            backend=config.backend, pretrained=config.pretrained)
    except CheckpointError as e:
        if "classes" not in str(e):
            raise
        raise CheckpointError(f"--pretrained {config.pretrained}: {e}\n  hint: tdn train "
                              f"--init-from {config.pretrained} --backbone-only loads all of "
                              f"it but the classifier") from None
    if config.init_from and initialise:
        report = load_checkpoint(network, config.init_from, backbone_only=config.backbone_only)
        if context.is_main:
            log.info("--init-from: %s", report)
    freeze_batch_norm_parameters(network, config.bn_mode)
    if config.sync_bn and context.is_distributed:
        if context.device.type != "cuda":
            raise ValueError("sync_bn needs GPUs (SyncBatchNorm has no CPU implementation)")
        network = nn.SyncBatchNorm.convert_sync_batchnorm(network)
    network = network.to(context.device)
    if config.channels_last:
        network = network.to(memory_format=torch.channels_last)
    if not context.is_distributed:
        return network, network
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return network, DistributedDataParallel(network, device_ids=device_ids)


# ----------------------------------------------------------------------------- loops
@dataclass
class Trainer:
    config: TrainConfig
    context: DistributedContext
    network: nn.Module
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    skips: SkipReporter

    def _progress(self, loader, description: str):
        if not (self.config.progress and self.context.is_main):
            return loader
        from tqdm import tqdm

        return tqdm(loader, desc=description, leave=False, dynamic_ncols=True)

    def train_epoch(self, loader, epoch: int, start: int = 0,
                    metrics: RunningMetrics | None = None,
                    after_step: Callable[[int, int, RunningMetrics], bool] | None = None,
                    ) -> tuple[RunningMetrics, bool]:
        """One epoch, or its remainder from micro-batch ``start`` with the metrics summed so
        far. ``after_step(micro_batches_done, micro_batches_total, local_metrics)`` runs after
        every optimiser step and returns True to stop. Returns (metrics summed over ranks,
        whether the epoch ran to its end)."""
        config, context = self.config, self.context
        self.model.train()
        apply_batch_norm_mode(self.network, config.bn_mode)
        loader.sampler.set_epoch(epoch, start * config.batch_size)
        metrics = metrics if metrics is not None else RunningMetrics()
        total = start + len(loader)  # micro-batches in the whole epoch
        bar = self._progress(loader, f"epoch {epoch + 1}/{config.epochs}")
        self.optimizer.zero_grad(set_to_none=True)
        pending = 0  # micro-batches whose gradients wait for the next optimiser step
        finished = True
        for position, batch in enumerate(bar, start=start):
            self.skips(batch.skipped)
            group_start = position - position % config.accumulate
            group_size = min(config.accumulate, total - group_start)
            step_now = (position + 1 - group_start) == group_size
            # Every rank must take part in every backward (DDP all-reduces inside it), so a
            # batch is dropped everywhere when any rank lost all of its items.
            if all_ranks_true(len(batch) > 0, context):
                clips = batch_to_input(batch.frames, context.device, config.channels_last)
                labels = batch.labels.to(context.device, non_blocking=True)
                sync = contextlib.nullcontext()
                if context.is_distributed and not step_now:
                    sync = self.model.no_sync()
                with sync:
                    with autocast(context.device, config.amp):
                        logits = self.model(clips)
                        loss = F.cross_entropy(logits.float(), labels)
                    finite = all_ranks_true(bool(torch.isfinite(loss)), context)
                    if not finite and not self.scaler.is_enabled():
                        raise self._diverged(loss, epoch, position, total)
                    # under the grad scaler, an overflow is routine: it skips the step
                    self.scaler.scale(loss / group_size).backward()
                if finite:
                    metrics.update(loss.item(), logits, labels)
                elif context.is_main:
                    log.warning("epoch %d, micro-batch %d: non-finite loss; the grad scaler "
                                "skips this step", epoch + 1, position + 1)
                pending += 1
            elif step_now and pending and context.is_distributed:
                # the synchronising backward of this group was dropped: average by hand
                average_gradients(self.network, context)
            stepped = step_now and pending > 0
            if stepped:
                self._optimizer_step()
                pending = 0
            if bar is not loader:
                summary = metrics.summary()
                bar.set_postfix(loss=f"{summary['loss']:.3f}", top1=f"{summary['top1']:.1f}",
                                lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")
            if stepped and after_step is not None:
                metrics.skipped += self.skips.take()
                if after_step(position + 1, total, metrics) and position + 1 < total:
                    finished = False
                    break
        if bar is not loader:
            bar.close()
        metrics.skipped += self.skips.take()
        return metrics.reduced(context), finished

    def _diverged(self, loss: torch.Tensor, epoch: int, position: int,
                  total: int) -> TrainingDiverged:
        step = self.scheduler.last_epoch + 1
        lr = self.optimizer.param_groups[0]["lr"]
        return TrainingDiverged(
            f"the training loss became {loss.item()} at optimiser step {step} (epoch "
            f"{epoch + 1}, micro-batch {position + 1} of {total}), so training stopped; the "
            f"checkpoints in --output hold the last good state. Lower --lr (this step used "
            f"{lr:g}), add --warmup-epochs, or keep --clip-grad-norm on")

    def _optimizer_step(self) -> None:
        if self.config.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.network.parameters(), self.config.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    @torch.no_grad()
    def validate(self, loader) -> RunningMetrics:
        self.model.eval()
        metrics = RunningMetrics()
        for batch in self._progress(loader, "validation"):
            self.skips(batch.skipped)
            if len(batch) == 0:
                continue
            clips = batch_to_input(batch.frames, self.context.device, self.config.channels_last)
            labels = batch.labels.to(self.context.device, non_blocking=True)
            with autocast(self.context.device, self.config.amp):
                logits = self.network(clips)  # no DDP wrapper: nothing to synchronise
            loss = F.cross_entropy(logits.float(), labels)
            metrics.update(loss.item(), logits, labels)
        metrics.skipped += self.skips.take()
        return metrics.reduced(self.context)


# ----------------------------------------------------------------------------- orchestration
def _resume_path(config: TrainConfig) -> str | None:
    if config.resume in (None, ""):
        return None
    if config.resume == "auto":
        path = os.path.join(config.output, training_state.LAST_NAME)
        return path if os.path.isfile(path) else None
    return config.resume


def _check_resumable(state: dict, expected_model: dict, path: str) -> None:
    recorded = state.get("model", {})
    for key in ("arch", "num_classes", "num_segments"):
        if recorded.get(key) != expected_model[key]:
            raise ValueError(f"cannot resume from {path}: it was trained with {key}="
                             f"{recorded.get(key)!r}, this run has {expected_model[key]!r}")


def run_training(config: TrainConfig, context: DistributedContext | None = None) -> dict:
    """Train as configured; returns the last epoch's metrics plus the best validation top-1.
    Sets up (and tears down) the process group itself unless a context is passed in."""
    config.validate()
    owns_group = context is None
    context = context or setup_distributed(config.device)
    try:
        return _run(config, context)
    finally:
        if owns_group:
            teardown_distributed()


@dataclass
class Progress:
    """Where a run stands: what a checkpoint records besides the module states."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # micro-batches of epoch ``epoch`` already trained (mid-epoch save)
    partial: RunningMetrics | None = None  # this rank's sums over those micro-batches
    history: list = field(default_factory=list)
    best_top1: float = -1.0
    best_epoch: int = -1


def _save(path_names: Sequence[str], trainer: Trainer, progress: Progress, extra: dict) -> None:
    """Gather every rank's RNG state (and partial metrics) and write the checkpoint(s) on
    rank 0. A collective: every rank calls it at the same point."""
    context = trainer.context
    # a checkpoint is a state worth resuming: never one whose weights overflowed (every rank
    # holds the same weights, so every rank stops here together)
    broken = [name for name, p in trainer.network.named_parameters()
              if not bool(torch.isfinite(p).all())]
    if broken:
        raise TrainingDiverged(
            f"after optimiser step {trainer.scheduler.last_epoch} the weights are no longer "
            f"finite ({broken[0]}{' and others' if len(broken) > 1 else ''}), so training "
            f"stopped without saving; the checkpoints in --output hold the last good state. "
            f"Lower --lr, add --warmup-epochs, or keep --clip-grad-norm on")
    rng_states = gather_objects(training_state.capture_rng_state(), context)
    partials = gather_objects(
        dataclasses.asdict(progress.partial) if progress.partial is not None else None, context)
    if not context.is_main:
        return
    state = {
        "format": training_state.CHECKPOINT_FORMAT, "epoch": progress.epoch,
        "step_in_epoch": progress.step_in_epoch, "partial_metrics": partials,
        "state_dict": trainer.network.state_dict(),
        "optimizer": trainer.optimizer.state_dict(), "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict(), "rng": rng_states, "history": progress.history,
        "best_top1": progress.best_top1, "best_epoch": progress.best_epoch, **extra,
    }
    for name in path_names:
        atomic_torch_save(state, os.path.join(trainer.config.output, name))


def _restore(state: dict, path: str, trainer: Trainer, recorded_model: dict,
             steps_per_epoch: int) -> Progress:
    """Put the checkpoint's states into the trainer's modules and random generators; returns
    where the run stands."""
    _check_resumable(state, recorded_model, path)
    trainer.network.load_state_dict(state["state_dict"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.scaler.load_state_dict(state["scaler"])
    rank, world = trainer.context.rank, trainer.context.world_size
    rng_states = state["rng"]
    training_state.restore_rng_state(rng_states[rank % len(rng_states)])
    progress = Progress(epoch=int(state["epoch"]), history=list(state["history"]),
                        best_top1=float(state["best_top1"]), best_epoch=int(state["best_epoch"]))
    step = int(state.get("step_in_epoch", 0))
    if step:
        partials = state.get("partial_metrics") or []
        if len(partials) != world:
            raise ValueError(f"{path} was saved mid-epoch by {len(partials)} process(es); resume "
                             f"it with the same number of processes (this run has {world}), or "
                             f"from an end-of-epoch checkpoint")
        progress.step_in_epoch = step
        progress.partial = RunningMetrics(**partials[rank])
    elif rebase_scheduler(trainer.scheduler, steps_per_epoch, progress.epoch):
        # another batch size, accumulation or process count from this epoch on: the
        # milestones (in epochs) keep their meaning
        if trainer.context.is_main:
            log.info("the schedule continues with %d optimiser steps per epoch",
                     steps_per_epoch)
    return progress


def _claim_output(config: TrainConfig, resuming: bool, context: DistributedContext) -> None:
    """Rank 0 checks that --output is writable and may hold this run (refusing a previous
    run's folder); every rank raises the same error when it may not."""
    problem: Exception | None = None
    if context.is_main:
        try:
            check_writable_folder(config.output, "--output")
            run_folder.claim(config.output, resuming=resuming, overwrite=config.overwrite,
                             resume_requested=bool(config.resume))
        except (ValueError, OSError) as e:
            problem = e
    verdict = gather_objects(None if problem is None else str(problem), context)[0]
    if problem is not None:
        raise problem
    if verdict is not None:
        raise ValueError(verdict)


def _run(config: TrainConfig, context: DistributedContext) -> dict:
    # every generator a process may touch, so that two runs of one command agree bit for bit
    # (a resume restores them all from the checkpoint)
    torch.manual_seed(config.seed + context.rank)
    random.seed(config.seed + context.rank)
    np.random.seed(config.seed + context.rank)
    resume_from = _resume_path(config)
    _claim_output(config, resume_from is not None, context)
    state = training_state.load_training_state(resume_from) if resume_from else None
    if state is not None:
        config, notes = reconcile(config, state.get("config"),
                                  mid_epoch=int(state.get("step_in_epoch", 0)) > 0,
                                  path=resume_from)
        for note in notes if context.is_main else ():
            log.warning("resume: %s", note)
    draw_curves = context.is_main and curves_available()
    if context.is_main and not draw_curves:
        log.warning("matplotlib is not installed: curves.png will not be drawn (pip install "
                    "matplotlib); logs and checkpoints are written as usual")
    data = prepare_data(config, context)
    network, model = build_training_model(config, data.num_classes, context,
                                          initialise=state is None)
    optimizer = build_optimizer(network, config.effective_lr(context.world_size),
                                config.momentum, config.weight_decay, config.fc_lr5)
    steps_per_epoch = math.ceil(len(data.train_loader) / config.accumulate)
    scheduler = build_scheduler(optimizer, steps_per_epoch,
                                config.lr_steps, config.lr_gamma, config.warmup_epochs)
    scaler = torch.amp.GradScaler(context.device.type,
                                  enabled=config.amp and context.device.type == "cuda")
    trainer = Trainer(config, context, network, model, optimizer, scheduler, scaler,
                      SkipReporter(context))
    recorded_model = model_config(config.arch, data.num_classes, config.segments, config.dropout,
                                  config.input_size)

    progress = Progress()
    if state is not None:
        progress = _restore(state, resume_from, trainer, recorded_model, steps_per_epoch)
        del state
        if context.is_main:
            log.info("resumed from %s at epoch %d%s", resume_from, progress.epoch,
                     f", micro-batch {progress.step_in_epoch}" if progress.step_in_epoch else "")
    # the lr of the global batch this run trains at (restored ones included)
    first_group = optimizer.param_groups[0]
    effective_lr = first_group["initial_lr"] / first_group.get("lr_mult", 1.0)
    record = {**config.as_dict(), "effective_lr": effective_lr,
              "world_size": context.world_size}
    extra = {"model": recorded_model, "metadata": training_metadata(network, recorded_model),
             "config": record, "class_names": data.class_names}
    if context.is_main:
        atomic_write_text(os.path.join(config.output, "config.json"),
                          json.dumps(record, indent=1) + "\n")
        rule = (f" (--scale-lr: {config.lr:g} x global batch "
                f"{config.global_batch(context.world_size)} / {config.lr_reference_batch})"
                if config.scale_lr else "")
        log.info("training %s on %d items (%d classes), %d process(es) x batch %d x %d "
                 "accumulation step(s), lr %g%s, device %s", config.arch,
                 len(data.train_loader.dataset), data.num_classes, context.world_size,
                 config.batch_size, config.accumulate, effective_lr, rule, context.device)

    steps_run = 0

    def after_step(epoch: int, done: int, total: int, partial: RunningMetrics) -> bool:
        """Mid-epoch checkpoints (--checkpoint-every) and early stop (--stop-after-steps);
        at the end of an epoch the regular checkpoint follows anyway."""
        nonlocal steps_run
        steps_run += 1
        stop = bool(config.stop_after_steps) and steps_run >= config.stop_after_steps
        periodic = bool(config.checkpoint_every) and \
            scheduler.last_epoch % config.checkpoint_every == 0
        if (stop or periodic) and done < total:
            _save([training_state.LAST_NAME], trainer, dataclasses.replace(
                progress, epoch=epoch, step_in_epoch=done, partial=partial), extra)
            barrier(context)
        return stop

    stopped = False
    for epoch in range(progress.epoch, config.epochs):
        started = time.perf_counter()
        start, partial = progress.step_in_epoch, progress.partial
        progress.step_in_epoch, progress.partial = 0, None
        epoch_lr = epoch_start_lr(scheduler, epoch)  # the lr of the epoch's first step
        reduced, finished = trainer.train_epoch(
            data.train_loader, epoch, start, partial,
            lambda done, total, sums, epoch=epoch: after_step(epoch, done, total, sums))
        if not finished:
            stopped = True
            if context.is_main:
                log.info("stopped after %d optimiser step(s), mid-epoch %d; resume with "
                         "--resume", steps_run, epoch + 1)
            break
        _check_readable(reduced, f"epoch {epoch + 1}", "training", "--train-list", context)
        train_metrics = reduced.summary()
        row = {"epoch": epoch + 1, "lr": epoch_lr,
               "train_loss": train_metrics["loss"], "train_top1": train_metrics["top1"],
               "train_top5": train_metrics["top5"], "train_skipped": train_metrics["skipped"]}
        evaluate_now = data.val_loader is not None and (
            (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs)
        if evaluate_now:
            validated = trainer.validate(data.val_loader)
            _check_readable(validated, f"epoch {epoch + 1}", "validation", "--val-list",
                            context)
            val_metrics = validated.summary()
            row.update(val_loss=val_metrics["loss"], val_top1=val_metrics["top1"],
                       val_top5=val_metrics["top5"], val_skipped=val_metrics["skipped"])
        row["seconds"] = time.perf_counter() - started
        progress.history.append(row)
        progress.epoch = epoch + 1
        # Best model: by validation top-1, or by training top-1 when there is no validation;
        # never an epoch whose losses are not finite numbers (its accuracies mean nothing).
        score = row.get("val_top1", None if data.val_loader is not None else row["train_top1"])
        trustworthy = all(math.isfinite(row[k]) for k in ("train_loss", "val_loss") if k in row)
        if score is not None and not trustworthy and context.is_main:
            log.warning("epoch %d: a loss is not finite (%s); this epoch cannot be the best",
                        epoch + 1, ", ".join(f"{k}={row[k]}" for k in ("train_loss", "val_loss")
                                             if k in row))
        improved = (score is not None and trustworthy and math.isfinite(score)
                    and score > progress.best_top1)
        if improved:
            progress.best_top1, progress.best_epoch = score, epoch + 1
        names = [training_state.LAST_NAME] + ([training_state.BEST_NAME] if improved else [])
        _save(names, trainer, progress, extra)
        if context.is_main:
            write_history(progress.history, config.output)
            if draw_curves:
                plot_curves(progress.history, os.path.join(config.output, "curves.png"),
                            show_top5=data.num_classes > 5)
            log.info("epoch %d/%d  %s", epoch + 1, config.epochs, "  ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in row.items() if k != "epoch"))
        # nobody runs ahead of the checkpoint (e.g. to evaluate it, or to finish and exit)
        barrier(context)
        if config.stop_after_steps and steps_run >= config.stop_after_steps \
                and progress.epoch < config.epochs:
            stopped = True
            break
    final = dict(progress.history[-1]) if progress.history else {}
    final.update(best_top1=progress.best_top1, best_epoch=progress.best_epoch,
                 completed=not stopped and progress.epoch >= config.epochs)
    return final


def _check_readable(metrics: RunningMetrics, when: str, part: str, list_flag: str,
                    context: DistributedContext) -> None:
    """Fail when a pass read no item at all (its metrics would be zeros that look real);
    warn when more than SKIPPED_WARNING_FRACTION of its items were unreadable."""
    seen = metrics.count + metrics.skipped
    if metrics.count == 0:
        raise ValueError(f"{when}: none of the {seen} {part} item(s) could be read (see the "
                         f"warnings above): check {list_flag}, --data-root and the files")
    fraction = metrics.skipped / seen
    if fraction > SKIPPED_WARNING_FRACTION and context.is_main:
        log.warning("%s: %d of %d %s items (%.0f%%) were unreadable and skipped; the %s "
                    "metrics describe only the rest", when, metrics.skipped, seen, part,
                    100 * fraction, part)
    elif metrics.skipped and context.is_main:
        log.warning("%s: skipped %d unreadable %s item(s)", when, metrics.skipped, part)
