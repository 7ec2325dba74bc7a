"""Reading, loading and writing model checkpoints.

Two formats are read (SPEC §8):

* the authors' ``torch.save`` files: a dict whose ``'state_dict'`` has keys
  ``module.base_model.*`` / ``module.new_fc.*``, or copies with ``module.`` stripped, or with
  the ``base_model.`` prefix stripped too, or a bare state dict. ``base_model.conv1_temp.*`` (an
  unused leftover in their network) is ignored.
* the project's own: a safetensors file whose keys are our ``state_dict()`` keys
  (``base_model.*``, ``new_fc.*``) and whose metadata records ``arch``, ``num_classes`` and
  ``num_segments`` (also accepted: a torch file ``{"state_dict": ..., "metadata": {...}}``).

Torch files are read with ``torch.load(weights_only=True)``: they cannot run code.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

log = logging.getLogger("tdn")

FORMAT_NAME = "tdn-checkpoint"
FORMAT_VERSION = "1"
# Keys the authors' TDN_Net holds but never uses in its forward.
IGNORED_PREFIXES = ("base_model.conv1_temp.",)
CLASSIFIER_PREFIX = "new_fc."
_SHOWN = 8  # how many keys a report lists per category


class CheckpointError(ValueError):
    """A checkpoint does not fit the model, or the file cannot be read."""


StateDict = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------------- reading
def _is_safetensors(path: Path) -> bool:
    # safetensors: 8-byte little-endian header size, then a JSON header starting with '{'.
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def read_state_dict(path: str | os.PathLike) -> tuple[StateDict, dict[str, str]]:
    """The tensors and metadata of a checkpoint file (either format), keys as stored."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if _is_safetensors(path):
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        return load_file(str(path)), metadata
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors come in many types; the message is what matters
        raise CheckpointError(
            f"cannot read {path} as a torch checkpoint with weights_only=True ({e}). If the file "
            "holds Python objects besides tensors and you trust it, load it yourself and pass "
            "its state dict instead") from e
    return unwrap_state_dict(obj, str(path))


def unwrap_state_dict(obj, source: str = "checkpoint") -> tuple[StateDict, dict[str, str]]:
    """``(state_dict, metadata)`` from a loaded object: a bare state dict, or a dict with it
    under ``'state_dict'`` (the authors' and ours) or ``'model'``."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source} holds a {type(obj).__name__}, not a state dict")
    metadata = {str(k): str(v) for k, v in dict(obj.get("metadata") or {}).items()}
    for key in ("state_dict", "model"):
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{source} holds no tensors (keys: {list(obj)[:_SHOWN]})")
    return state, metadata


_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def canonical_keys(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Authors' keys in any prefix form -> our keys (``base_model.*``, ``new_fc.*``).

    Also strips the prefixes that DDP (``module.``) and torch.compile (``_orig_mod.``) add.
    """
    out: StateDict = {}
    for key, value in state.items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        if not key.startswith(("base_model.", CLASSIFIER_PREFIX)):
            key = "base_model." + key
        out[key] = value
    return out


def is_video_checkpoint(state: Mapping[str, torch.Tensor]) -> bool:
    """True for a TDN/TSN model checkpoint, False for ImageNet classification weights."""
    keys = canonical_keys(state)
    return any(k.startswith((CLASSIFIER_PREFIX, "base_model.conv1_5.")) for k in keys)


# ----------------------------------------------------------------------------------- loading
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
                              for k, a, b in self.mismatched[:_SHOWN])
            more = len(self.mismatched) - _SHOWN
            lines.append(f"  shape mismatches ({len(self.mismatched)}): {shown}"
                         + (f", ... {more} more" if more > 0 else ""))
        lines += [f"  hint: {h}" for h in self.hints]
        return "\n".join(lines)


def _some(keys: list[str]) -> str:
    more = len(keys) - _SHOWN
    return ", ".join(keys[:_SHOWN]) + (f", ... {more} more" if more > 0 else "")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


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
            f"{model.state_dict()[weight_key].shape[0]}: pass backbone_only=True (CLI: "
            "--backbone-only) to load everything except new_fc, then fine-tune it")
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
    if segments and hasattr(model, "num_segments") and int(segments) != model.num_segments:
        # The weights do not depend on T; only the S-TDM fusion weights were chosen for it.
        log.warning("%s was trained with num_segments=%s, the model uses %d", source, segments,
                    model.num_segments)


# ----------------------------------------------------------------------------------- writing
def checkpoint_metadata(model: nn.Module, **extra) -> dict[str, str]:
    """The metadata saved with a model: enough to rebuild it with :func:`load_model`."""
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}
    for name in ("arch", "num_classes", "num_segments", "alpha", "beta"):
        if hasattr(model, name):
            meta[name] = str(getattr(model, name))
    meta.update({k: str(v) for k, v in extra.items()})
    return meta


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_state_dict(state: Mapping[str, torch.Tensor], path: str | os.PathLike,
                    metadata: Mapping[str, str]) -> None:
    """Write ``state`` (keys as given) atomically: safetensors, or a torch file for ``.pt/.pth``."""
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    metadata = {str(k): str(v) for k, v in metadata.items()}
    if path.suffix in (".pt", ".pth", ".tar"):
        _atomic_write(path, lambda tmp: torch.save({"state_dict": tensors, "metadata": metadata},
                                                   tmp))
    else:
        from safetensors.torch import save_file

        _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def save_checkpoint(model: nn.Module, path: str | os.PathLike, **extra_metadata) -> None:
    """Save ``model``'s weights and metadata (safetensors unless ``path`` ends in .pt/.pth)."""
    model = unwrap_model(model)
    save_state_dict(model.state_dict(), path, checkpoint_metadata(model, **extra_metadata))


# ------------------------------------------------------------------------- rebuilding models
def infer_arch(state: Mapping[str, torch.Tensor]) -> str:
    """The registry name of the model a checkpoint was saved from, from its keys alone."""
    from .models.resnet import RESNETS

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


def load_model(path: str | os.PathLike, backend: str | None = None,
               num_segments: int | None = None, **build_kwargs) -> nn.Module:
    """Build the model a checkpoint describes and load it (strictly).

    ``num_segments`` defaults to the checkpoint's metadata (8 for the authors' files, which do
    not record it). Extra keyword arguments go to :func:`tdn.build_model`.
    """
    from .models import build_model

    state, metadata = read_state_dict(path)
    info = describe(state, metadata, num_segments)
    kwargs = {}
    for name in ("alpha", "beta"):
        if name in metadata and info["arch"].startswith("tdn"):
            kwargs[name] = float(metadata[name])
    kwargs.update(build_kwargs)
    model = build_model(info["arch"], num_classes=int(info["num_classes"]),
                        num_segments=int(info["num_segments"]), backend=backend, **kwargs)
    meta = {k: v for k, v in metadata.items() if k != "num_segments"}
    load_checkpoint(model, state, metadata=meta)
    return model


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike,
                       num_segments: int | None = None, arch: str | None = None) -> dict[str, str]:
    """Rewrite an authors' checkpoint as a project checkpoint; returns the metadata written.

    The state dict is checked against a model built on the meta device (no memory, no time)
    before anything is written, so a converted file always loads strictly.
    """
    from .models import build_model

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
