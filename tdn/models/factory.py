"""Building models: from the registry, from pretrained weights, from checkpoint files.

The one place that puts networks and weight files together, on top of the model definitions
(which register themselves in :mod:`tdn.models.registry`), the ImageNet key mapping
(:mod:`tdn.models.imagenet`) and the file formats (:mod:`tdn.checkpoint_io`):

* :func:`build_model` builds a registered model, optionally from ``pretrained`` weights;
* :func:`load_checkpoint` loads a checkpoint into a model and reports what did not fit;
* :func:`load_model` builds the model a checkpoint describes and loads it;
* :func:`convert_checkpoint` rewrites an authors' checkpoint in the project's format.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..checkpoint_io import (CLASSIFIER_PREFIX, IGNORED_PREFIXES, SHOWN_KEYS, CheckpointError,
                             StateDict, canonical_keys, checkpoint_metadata, is_video_checkpoint,
                             read_state_dict, save_state_dict, unwrap_model, unwrap_state_dict)
from .fold import fold_batch_norm
from .imagenet import load_imagenet_weights
from .registry import model_entry_point
from .resnet import RESNETS

log = logging.getLogger("tdn")


# ----------------------------------------------------------------------------------- building
def build_model(name: str, num_classes: int = 174, num_segments: int = 8,
                backend: str | None = None, pretrained: str | os.PathLike | None = None,
                dropout: float = 0.5, alpha: float | None = None,
                beta: float | None = None, fold_bn: bool = False) -> nn.Module:
    """Build a registered model (see :func:`tdn.list_models`).

    Args:
        name: e.g. ``"tdn_resnet50"``, ``"tsn_resnet50"``.
        num_classes: classifier width (174 = Something-Something, 400 = Kinetics-400).
        num_segments: T, the number of 5-frame snippets per clip.
        backend: where TDN's fused operators run: ``None``/``"auto"`` (fastest available),
            ``"cpu"``, ``"cuda"``, ``"triton"``, or ``"reference"`` for the authors' unfused code
            path. Ignored by TSN models, which have no temporal operators.
        pretrained: a local file. ImageNet ResNet weights (torchvision or fbresnet names)
            initialise the backbone (docs/math.md §2.5); a TDN checkpoint (the authors' or ours,
            see :func:`load_checkpoint`) loads the whole model. The report is logged on the
            ``"tdn"`` logger and kept as ``model.pretrained_report``.
        dropout: before ``new_fc`` (0.5 in the authors' recipe).
        alpha, beta: S-TDM fusion weights; default (0.5, 0.5) for T=8, else (0.75, 0.25).
        fold_bn: for inference. Return the model in eval mode with every batch norm that
            follows a convolution folded into it (:func:`tdn.fold_batch_norm`, after the
            ``pretrained`` weights are loaded): same logits, one pass fewer per batch norm. A
            folded model cannot be trained, nor saved as a checkpoint of the architecture.
    """
    if not isinstance(fold_bn, bool):
        raise TypeError(f"fold_bn must be a bool, got {fold_bn!r}")
    entry_point = model_entry_point(name)
    model = entry_point(num_classes=num_classes, num_segments=num_segments, backend=backend,
                        dropout=dropout, alpha=alpha, beta=beta)
    if pretrained is not None:
        report = load_pretrained(model, pretrained)
        model.pretrained_report = report
        log.info("%s", report)
    if fold_bn:
        fold_batch_norm(model.eval())
    return model


def load_pretrained(model: nn.Module, path: str | os.PathLike):
    """Load ``path`` into ``model``: a whole-model checkpoint if it holds a classifier
    (``new_fc``) or TDN's S-TDM stem (``conv1_5``), else ImageNet ResNet weights."""
    state, metadata = read_state_dict(path)
    if is_video_checkpoint(state):
        return load_checkpoint(model, state, metadata=metadata)
    return load_imagenet_weights(model, state, source=str(path))


# ------------------------------------------------------------------------ loading checkpoints
@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did; ``str()`` gives a readable summary."""

    source: str
    loaded: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # dropped on purpose (conv1_temp, new_fc)
    missing: list[str] = field(default_factory=list)  # model keys the checkpoint lacks
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys the model lacks
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # key, ckpt, model
    hints: list[str] = field(default_factory=list)
    applied: bool = False  # whether the tensors were copied into the model

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        verb = "loaded" if self.applied else "nothing loaded;"
        lines = [f"{self.source}: {verb} {len(self.loaded)} tensors fit the model"
                 if not self.applied else f"{self.source}: loaded {len(self.loaded)} tensors"]
        if self.ignored:
            lines.append(f"  ignored on purpose ({len(self.ignored)}): {_some(self.ignored)}")
        if self.missing:
            lines.append(f"  missing from the checkpoint ({len(self.missing)}): "
                         f"{_some(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected in the checkpoint ({len(self.unexpected)}): "
                         f"{_some(self.unexpected)}")
        if self.mismatched:
            shown = ", ".join(f"{k} checkpoint {list(a)} vs model {list(b)}"
                              for k, a, b in self.mismatched[:SHOWN_KEYS])
            more = len(self.mismatched) - SHOWN_KEYS
            lines.append(f"  shape mismatches ({len(self.mismatched)}): {shown}"
                         + (f", ... {more} more" if more > 0 else ""))
        lines += [f"  hint: {h}" for h in self.hints]
        return "\n".join(lines)


def _some(keys: list[str]) -> str:
    more = len(keys) - SHOWN_KEYS
    return ", ".join(keys[:SHOWN_KEYS]) + (f", ... {more} more" if more > 0 else "")


def _compare(model: nn.Module, state: StateDict, backbone_only: bool, source: str) -> LoadReport:
    report = LoadReport(source)
    target = model.state_dict()
    for key, value in state.items():
        skipped_head = backbone_only and key.startswith(CLASSIFIER_PREFIX)
        if key.startswith(IGNORED_PREFIXES) or skipped_head:
            report.ignored.append(key)
        elif key not in target:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(target[key].shape):
            report.mismatched.append((key, tuple(value.shape), tuple(target[key].shape)))
        else:
            report.loaded.append(key)
    report.missing = [k for k in target if k not in state
                      and not (backbone_only and k.startswith(CLASSIFIER_PREFIX))]
    _add_hints(report, model, state)
    return report


def _add_hints(report: LoadReport, model: nn.Module, state: StateDict) -> None:
    if report.missing or report.unexpected:
        try:
            arch = infer_arch(state)
        except CheckpointError:
            arch = None
        if arch and arch != getattr(model, "arch", arch):
            report.hints.append(f"the checkpoint holds a {arch}, the model is a {model.arch}: "
                                f"build_model({arch!r}, ...)")
    weight_key = CLASSIFIER_PREFIX + "weight"
    if any(k == weight_key for k, _, _ in report.mismatched):
        report.hints.append(
            f"the checkpoint's classifier has {state[weight_key].shape[0]} classes, the model's "
            f"{model.state_dict()[weight_key].shape[0]}: pass backbone_only=True ("
            "tdn train: --init-from CKPT --backbone-only) to load everything except new_fc, "
            "then fine-tune it")
    if report.missing and any(".mse." in k for k in report.missing) and not any(
            ".mse." in k for k in state):
        report.hints.append("the checkpoint has no L-TDM weights (mse.*): it is not a TDN "
                            "checkpoint. ImageNet weights go through build_model(pretrained=path)")
    if any(re.search(r"layer\d\.", k) for k in report.unexpected) and any(
            "_bak." in k for k in report.missing):
        report.hints.append("the checkpoint uses TSN/torchvision stage names (layer1..4); TDN "
                            "models name them layer1_bak..layer4_bak, as the authors do")


def load_checkpoint(model: nn.Module, path_or_state_dict, backbone_only: bool = False, *,
                    strict: bool = True, metadata: Mapping[str, str] | None = None) -> LoadReport:
    """Load a checkpoint (authors' format in any prefix form, or ours) into ``model``.

    Args:
        path_or_state_dict: a file path, a state dict, or a dict holding one under
            ``'state_dict'``.
        backbone_only: skip the classifier ``new_fc`` (e.g. Kinetics weights into a
            Something-Something model); it keeps its current values.
        strict: raise :class:`CheckpointError` (and load nothing) on any missing key,
            unexpected key or shape mismatch; with ``strict=False`` load what fits.
        metadata: the file's metadata when ``path_or_state_dict`` was read already.

    Returns the :class:`LoadReport`.
    """
    model = unwrap_model(model)
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        source = str(path_or_state_dict)
        raw, file_metadata = read_state_dict(path_or_state_dict)
        metadata = {**file_metadata, **(metadata or {})}
    else:
        source = "state dict"
        raw, wrapped_metadata = unwrap_state_dict(path_or_state_dict, source)
        metadata = {**wrapped_metadata, **(metadata or {})}
    state = canonical_keys(raw)
    _check_metadata(model, metadata, source)
    report = _compare(model, state, backbone_only, source)
    if strict and not report.ok:
        raise CheckpointError(f"checkpoint does not fit {type(model).__name__} "
                              f"({getattr(model, 'arch', '?')}):\n{report}")
    model.load_state_dict({k: state[k] for k in report.loaded}, strict=False)
    report.applied = True
    return report


def _check_metadata(model: nn.Module, metadata: Mapping[str, str], source: str) -> None:
    arch = metadata.get("arch")
    if arch and getattr(model, "arch", arch) != arch:
        raise CheckpointError(f"{source} holds a {arch} model, but the model is {model.arch}")
    segments = metadata.get("num_segments")
    if segments:
        try:
            segments = int(segments)
        except ValueError:
            raise CheckpointError(f"{source}: metadata field 'num_segments' should be an "
                                  f"integer, got {segments!r}") from None
    if segments and hasattr(model, "num_segments") and segments != model.num_segments:
        # The weights do not depend on T; only the S-TDM fusion weights were chosen for it.
        log.warning("%s was trained with num_segments=%s, the model uses %d", source, segments,
                    model.num_segments)


# ----------------------------------------------------------------- models from checkpoints
def infer_arch(state: Mapping[str, torch.Tensor]) -> str:
    """The registry name of the model a checkpoint was saved from, from its keys alone."""
    keys = canonical_keys(state)
    family = "tdn" if any(k.startswith("base_model.conv1_5.") for k in keys) else "tsn"
    stage = "layer{}_bak" if family == "tdn" else "layer{}"
    counts = []
    for i in range(1, 5):
        prefix = f"base_model.{stage.format(i)}."
        counts.append(len({k[len(prefix):].split(".")[0] for k in keys if k.startswith(prefix)}))
    bottleneck = any(re.match(r"base_model\.layer\d(_bak)?\.\d+\.conv3\.", k) for k in keys)
    for depth, spec in RESNETS.items():
        if tuple(counts) == spec.blocks_per_stage and (spec.expansion == 4) == bottleneck:
            return f"{family}_resnet{depth}"
    raise CheckpointError(f"cannot tell the architecture: blocks per stage {counts}, "
                          f"{'bottleneck' if bottleneck else 'basic'} blocks")


def describe(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str],
             num_segments: int | None = None) -> dict[str, str]:
    """arch / num_classes / num_segments of a checkpoint, from its metadata or its keys."""
    keys = canonical_keys(state)
    arch = metadata.get("arch") or infer_arch(keys)
    fc = keys.get(CLASSIFIER_PREFIX + "weight")
    if fc is None:
        raise CheckpointError("the checkpoint has no classifier (new_fc.weight)")
    segments = num_segments or int(metadata.get("num_segments", 0)) or 8
    return {"arch": arch, "num_classes": str(fc.shape[0]), "num_segments": str(segments)}


def load_model_and_metadata(path: str | os.PathLike, backend: str | None = None,
                            num_segments: int | None = None, *, arch: str | None = None,
                            num_classes: int | None = None,
                            **build_kwargs) -> tuple[nn.Module, dict[str, str]]:
    """:func:`load_model`, and the metadata the file holds (e.g. the training input size)."""
    state, metadata = read_state_dict(path)
    info = describe(state, metadata, num_segments)
    arch = arch or info["arch"]
    kwargs = {}
    if "dropout" in metadata:
        kwargs["dropout"] = float(metadata["dropout"])
    if arch.startswith("tdn"):
        kwargs.update({name: float(metadata[name]) for name in ("alpha", "beta")
                       if name in metadata})
    kwargs.update(build_kwargs)
    model = build_model(arch, num_classes=num_classes or int(info["num_classes"]),
                        num_segments=int(info["num_segments"]), backend=backend, **kwargs)
    # The segment count was chosen above; the file's value matters only through that choice.
    load_checkpoint(model, state, metadata={k: v for k, v in metadata.items()
                                            if k != "num_segments"})
    return model, metadata


def load_model(path: str | os.PathLike, backend: str | None = None,
               num_segments: int | None = None, *, arch: str | None = None,
               num_classes: int | None = None, **build_kwargs) -> nn.Module:
    """Build the model a checkpoint describes and load it (strictly).

    Architecture and class count come from the file's metadata or, failing that, its keys;
    ``arch`` / ``num_classes`` override them. ``num_segments`` defaults to the metadata (8 for
    the authors' files, which do not record it); dropout and the S-TDM weights to the
    recorded ones. Extra keyword arguments go to :func:`build_model`.
    """
    return load_model_and_metadata(path, backend, num_segments, arch=arch,
                                   num_classes=num_classes, **build_kwargs)[0]


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike,
                       num_segments: int | None = None, arch: str | None = None) -> dict[str, str]:
    """Rewrite an authors' checkpoint as a project checkpoint; returns the metadata written.

    The state dict is checked against a model built on the meta device (no memory, no time)
    before anything is written, so a converted file always loads strictly.
    """
    raw, metadata = read_state_dict(src)
    state = {k: v for k, v in canonical_keys(raw).items() if not k.startswith(IGNORED_PREFIXES)}
    info = describe(state, {**metadata, **({"arch": arch} if arch else {})}, num_segments)
    with torch.device("meta"):
        model = build_model(info["arch"], num_classes=int(info["num_classes"]),
                            num_segments=int(info["num_segments"]))
    report = _compare(model, state, False, str(src))
    if not report.ok:
        raise CheckpointError(f"{src} does not match {info['arch']}:\n{report}")
    meta = checkpoint_metadata(model, source=Path(src).name)
    save_state_dict({k: state[k] for k in model.state_dict()}, dst, meta)
    return meta
