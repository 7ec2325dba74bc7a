"""``tdn evaluate``: multi-view scores over a labelled list, then accuracy metrics.

Each video gives ``clips x crops`` views; the model's per-view scores are averaged (raw logits
by default, as the authors' test scripts; or softmax probabilities). Items are sharded over
ranks without padding and gathered back, so every video counts exactly once.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..data import EvalTransform, VideoDataset, build_loader, read_annotation_list, read_class_names
from ..fileio import atomic_write_text
from .batches import batch_to_input
from .distributed import DistributedContext, gather_objects, setup_distributed, teardown_distributed
from .metrics import classification_report
from .modelio import checkpoint_class_names, load_model_for_inference
from .reporting import plot_confusion
from .trainer import autocast

log = logging.getLogger("tdn")
AVERAGES = ("logits", "softmax")


@dataclass
class EvalConfig:
    checkpoint: str
    val_list: str
    data_root: str | None = None
    arch: str | None = None
    num_classes: int | None = None
    segments: int | None = None
    input_size: int = 224
    scale_size: int | None = None
    clips: int = 1
    crops: int = 1
    average: str = "logits"
    batch_size: int = 8
    workers: int = 4
    device: str = "auto"
    backend: str | None = None
    amp: bool = False
    channels_last: bool = False
    list_format: str = "auto"
    image_template: str = "img_{:05d}.jpg"
    first_frame_index: int = 1
    decoder: str = "auto"
    class_names: str | None = None
    output: str | None = None
    progress: bool = True

    def validate(self) -> None:
        for name in ("input_size", "clips", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.crops not in (1, 3):
            raise ValueError(f"crops must be 1 or 3, got {self.crops}")
        if self.average not in AVERAGES:
            raise ValueError(f"average must be one of {AVERAGES}, got {self.average!r}")
        if not os.path.isfile(self.val_list):
            raise FileNotFoundError(f"val list not found: {self.val_list}")


@dataclass
class Scores:
    """Per-video averaged scores in dataset order, their labels, and what was skipped."""

    indices: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    skipped: list


def average_views(logits: torch.Tensor, num_views: int, average: str) -> torch.Tensor:
    """(N*V, K) per-view scores -> (N, K) per-video scores."""
    per_view = logits.float().view(-1, num_views, logits.shape[-1])
    if average == "softmax":
        per_view = per_view.softmax(dim=-1)
    return per_view.mean(dim=1)


@torch.no_grad()
def collect_scores(network: nn.Module, loader, context: DistributedContext, *,
                   average: str = "logits", amp: bool = False, channels_last: bool = False,
                   progress: bool = False) -> Scores:
    network.eval()
    indices, scores, labels, skipped = [], [], [], []
    iterator = loader
    if progress and context.is_main:
        from tqdm import tqdm

        iterator = tqdm(loader, desc="evaluating", leave=False, dynamic_ncols=True)
    for batch in iterator:
        for item in batch.skipped:
            log.warning("[rank %d] skipping unreadable item %s: %s", context.rank, item.path,
                        item.reason)
        skipped += [(item.path, item.reason) for item in batch.skipped]
        if len(batch) == 0:
            continue
        num_views = batch.frames.shape[1]
        clips = batch_to_input(batch.frames, context.device, channels_last)
        with autocast(context.device, amp):
            logits = network(clips)
        scores.append(average_views(logits, num_views, average).cpu())
        indices.append(batch.indices)
        labels.append(batch.labels)
    local = (torch.cat(indices) if indices else torch.empty(0, dtype=torch.long),
             torch.cat(scores) if scores else torch.empty(0),
             torch.cat(labels) if labels else torch.empty(0, dtype=torch.long), skipped)
    parts = gather_objects(local, context)
    all_indices = torch.cat([p[0] for p in parts])
    non_empty = [p[1] for p in parts if p[1].numel()]
    all_scores = torch.cat(non_empty) if non_empty else torch.empty(0, 0)
    all_labels = torch.cat([p[2] for p in parts])
    order = all_indices.argsort()
    return Scores(all_indices[order], all_scores[order] if all_scores.numel() else all_scores,
                  all_labels[order], [s for p in parts for s in p[3]])


def run_evaluation(config: EvalConfig, context: DistributedContext | None = None) -> dict:
    """Evaluate a checkpoint; returns the metrics dict (also written to ``output`` with the
    confusion-matrix PNG when ``output`` is set, by rank 0)."""
    config.validate()
    owns_group = context is None
    context = context or setup_distributed(config.device)
    try:
        return _evaluate(config, context)
    finally:
        if owns_group:
            teardown_distributed()


def _evaluate(config: EvalConfig, context: DistributedContext) -> dict:
    network, model_cfg = load_model_for_inference(
        config.checkpoint, config.arch, config.num_classes, config.segments, config.backend,
        context.device)
    if config.channels_last:
        network = network.to(memory_format=torch.channels_last)
    records = read_annotation_list(config.val_list, config.data_root, config.list_format)
    num_classes = model_cfg["num_classes"]
    largest = max(r.label for r in records)
    if largest >= num_classes:
        raise ValueError(f"label {largest} in {config.val_list} but the model has {num_classes} "
                         f"classes")
    dataset = VideoDataset(
        records, model_cfg["num_segments"],
        EvalTransform(config.input_size, config.scale_size, config.crops),
        mode="test" if config.clips > 1 else "val", num_clips=config.clips,
        image_template=config.image_template, first_frame_index=config.first_frame_index,
        decoder=config.decoder)
    loader = build_loader(dataset, config.batch_size, train=False,
                          num_replicas=context.world_size, rank=context.rank,
                          workers=config.workers, pin_memory=context.device.type == "cuda")
    scores = collect_scores(network, loader, context, average=config.average, amp=config.amp,
                            channels_last=config.channels_last, progress=config.progress)
    if scores.labels.numel() == 0:
        raise RuntimeError(f"no item of {config.val_list} could be read "
                           f"({len(scores.skipped)} skipped)")
    report = classification_report(scores.scores, scores.labels)
    metrics = report.as_dict()
    metrics.update(arch=model_cfg["arch"], num_segments=model_cfg["num_segments"],
                   views=config.clips * config.crops, clips=config.clips, crops=config.crops,
                   skipped=len(scores.skipped), checkpoint=config.checkpoint)
    names = (read_class_names(config.class_names) if config.class_names
             else checkpoint_class_names(config.checkpoint))
    if names:
        metrics["per_class_accuracy"] = {
            names[k] if k < len(names) else str(k): acc
            for k, acc in enumerate(report.per_class_accuracy)}
    if context.is_main and config.output:
        os.makedirs(config.output, exist_ok=True)
        plot_confusion(report.confusion, os.path.join(config.output, "confusion.png"), names)
        atomic_write_text(os.path.join(config.output, "metrics.json"),
                          json.dumps(metrics, indent=1) + "\n")
        torch.save({"indices": scores.indices, "scores": scores.scores, "labels": scores.labels},
                   os.path.join(config.output, "scores.pt"))
    return metrics
