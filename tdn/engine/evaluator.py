"""``tdn evaluate``: multi-view scores over a labelled list, then accuracy metrics.

Each video gives ``clips x crops`` views; the model's per-view scores are averaged (raw logits
by default, as the authors' test scripts; or softmax probabilities). Items are sharded over
ranks without padding and gathered back, so every video counts exactly once.

Several checkpoints make an ensemble: each model samples the videos with its own segment
count (read from its checkpoint), and their per-video scores are fused as
:mod:`tdn.engine.video_scores` describes. The output folder and the ``--save-scores`` file
are checked for writing before any model runs, and a missing matplotlib costs the confusion
plot (one warning), never the metrics.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..data import EvalTransform, VideoDataset, build_loader, read_annotation_list, read_class_names
from ..data.annotations import check_image_template
from ..fileio import atomic_write_text
from .batches import batch_to_input
from .distributed import DistributedContext, gather_objects, setup_distributed, teardown_distributed
from .metrics import classification_report
from .modelio import checkpoint_class_names, load_model_for_inference
from .reporting import plot_confusion
from .trainer import autocast
from .video_scores import FUSIONS, VideoScores, fuse

log = logging.getLogger("tdn")
AVERAGES = ("logits", "softmax")


@dataclass
class EvalConfig:
    checkpoint: list[str]  # one path, or several for an ensemble
    val_list: str
    data_root: str | None = None
    arch: str | None = None
    num_classes: int | None = None
    segments: list[int] | None = None  # for checkpoints that do not record T: one, or one each
    input_size: int = 224
    scale_size: int | None = None
    clips: int = 1
    crops: int = 1
    average: str = "logits"
    fuse: str = "softmax"
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
    save_scores: str | None = None
    progress: bool = True

    def __post_init__(self):
        if isinstance(self.checkpoint, str):
            self.checkpoint = [self.checkpoint]
        if isinstance(self.segments, int):
            self.segments = [self.segments]

    def segments_of(self, index: int) -> int | None:
        """The ``--segments`` given for checkpoint ``index`` (None: the checkpoint's own)."""
        if not self.segments:
            return None
        return self.segments[0] if len(self.segments) == 1 else self.segments[index]

    def validate(self) -> None:
        if not self.checkpoint:
            raise ValueError("checkpoint: give at least one")
        for checkpoint in self.checkpoint:
            if not os.path.isfile(checkpoint):
                raise FileNotFoundError(f"--checkpoint {checkpoint}: file not found")
        if self.segments and len(self.segments) not in (1, len(self.checkpoint)):
            raise ValueError(f"--segments: give one value, or one per --checkpoint "
                             f"({len(self.checkpoint)}), got {len(self.segments)}")
        if self.fuse not in FUSIONS:
            raise ValueError(f"fuse must be one of {FUSIONS}, got {self.fuse!r}")
        for name in ("input_size", "clips", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.crops not in (1, 3):
            raise ValueError(f"crops must be 1 or 3, got {self.crops}")
        if self.average not in AVERAGES:
            raise ValueError(f"average must be one of {AVERAGES}, got {self.average!r}")
        check_image_template(self.image_template, "--image-template")
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
    """Evaluate one checkpoint or an ensemble; returns the metrics dict (also written, by rank
    0, to ``output`` with the confusion-matrix PNG and ``scores.pt`` when ``output`` is set,
    and the per-video scores to ``save_scores`` when set)."""
    config.validate()
    check_outputs(config)
    owns_group = context is None
    context = context or setup_distributed(config.device)
    try:
        return _evaluate(config, context)
    finally:
        if owns_group:
            teardown_distributed()


def check_writable_folder(folder: str, flag: str) -> None:
    """Create ``folder`` if needed and write a probe file there, so that an unwritable
    destination fails before the evaluation rather than after it."""
    try:
        os.makedirs(folder, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise OSError(f"{flag} {folder}: cannot write there ({error.strerror or error})") from None


def check_outputs(config: EvalConfig) -> None:
    if config.output:
        check_writable_folder(config.output, "--output")
    if config.save_scores:
        check_writable_file(config.save_scores, "--save-scores")


def check_writable_file(path: str, flag: str) -> None:
    """``path`` can be written: not a folder, in a folder that takes files."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{flag} {path}: is a folder; give a file name")
    check_writable_folder(os.path.dirname(os.path.abspath(path)), flag)


def plotting_available() -> bool:
    """matplotlib is optional (the ``video`` extra): without it the confusion plot is
    skipped, with one warning."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def video_id(path: str, data_root: str | None) -> str:
    """A video's id in scores files: its path as the list gives it, i.e. relative to the data
    root, so that scores computed under different roots still line up."""
    return os.path.relpath(path, data_root) if data_root else path


def _score_one_model(config: EvalConfig, index: int, records,
                     context: DistributedContext) -> tuple[VideoScores, list, dict]:
    """Checkpoint ``index``'s per-video scores, its skipped items and its model config."""
    checkpoint = config.checkpoint[index]
    network, model_cfg = load_model_for_inference(
        checkpoint, config.arch, config.num_classes, config.segments_of(index), config.backend,
        context.device, optimize=True)
    if config.channels_last:
        network = network.to(memory_format=torch.channels_last)
    num_classes = model_cfg["num_classes"]
    largest = max(r.label for r in records)
    if largest >= num_classes:
        raise ValueError(f"label {largest} in {config.val_list} but {checkpoint} has "
                         f"{num_classes} classes")
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
    videos = [video_id(records[i].path, config.data_root) for i in scores.indices.tolist()]
    per_video = VideoScores(videos, scores.labels, scores.scores,
                            "probabilities" if config.average == "softmax" else "logits",
                            [checkpoint], [model_cfg["num_segments"]],
                            [config.clips * config.crops])
    return per_video, scores.skipped, model_cfg


def _evaluate(config: EvalConfig, context: DistributedContext) -> dict:
    draw = bool(config.output) and plotting_available()
    if config.output and not draw and context.is_main:
        log.warning("matplotlib is not installed: confusion.png is skipped "
                    "(pip install matplotlib); the metrics are written as usual")
    records = read_annotation_list(config.val_list, config.data_root, config.list_format)
    models, skipped, configs = [], set(), []
    for index in range(len(config.checkpoint)):
        part, part_skipped, model_cfg = _score_one_model(config, index, records, context)
        models.append(part)
        configs.append(model_cfg)
        skipped.update(part_skipped)  # (path, reason): the same unreadable file for every model
    names = config.checkpoint
    fused, left_out = fuse(models, config.fuse, names) if len(models) > 1 else (models[0], [])
    report = classification_report(fused.scores, fused.labels)
    metrics = report.as_dict()
    metrics.update(arch=configs[0]["arch"], num_segments=configs[0]["num_segments"],
                   views=config.clips * config.crops, clips=config.clips, crops=config.crops,
                   skipped=len(skipped) + len(left_out), checkpoint=names[0])
    if len(models) > 1:
        metrics.update(fuse=config.fuse, checkpoints=list(names), models=[
            dict(checkpoint=name, arch=cfg["arch"], num_segments=cfg["num_segments"],
                 **{k: v for k, v in classification_report(part.scores, part.labels).as_dict()
                    .items() if k in ("top1", "top5", "mean_class_accuracy")})
            for name, cfg, part in zip(names, configs, models)])
    class_names = (read_class_names(config.class_names) if config.class_names
                   else checkpoint_class_names(names[0]))
    if class_names:
        metrics["per_class_accuracy"] = {
            class_names[k] if k < len(class_names) else str(k): acc
            for k, acc in enumerate(report.per_class_accuracy)}
    if context.is_main:
        positions = {video_id(r.path, config.data_root): i for i, r in enumerate(records)}
        _write_results(config, metrics, fused, report, class_names, draw,
                       torch.tensor([positions[v] for v in fused.videos]))
    return metrics


def _write_results(config: EvalConfig, metrics: dict, fused: VideoScores, report,
                   class_names, draw: bool, positions: torch.Tensor) -> None:
    """Scores and metrics first: the plot, the one optional output, comes last.
    ``positions``: each scored video's line number in the list (0-based, without comments)."""
    if config.save_scores:
        fused.save(config.save_scores)
        log.info("per-video scores of %d videos written to %s", len(fused.videos),
                 config.save_scores)
    if not config.output:
        return
    fused.save(os.path.join(config.output, "scores.pt"), indices=positions)
    atomic_write_text(os.path.join(config.output, "metrics.json"),
                      json.dumps(metrics, indent=1) + "\n")
    if draw:
        plot_confusion(report.confusion, os.path.join(config.output, "confusion.png"),
                       class_names)
