"""Checkpoint files on disk: reading and writing state dicts, and the key names they use.

This module knows file formats and key prefixes, nothing about the networks: it imports no
model code, so everything above it (the model factory, the training engine, the benchmarks)
can read and write weights. Loading a file *into* a model, and building the model a file
describes, is :mod:`tdn.models.factory`'s job.

Two formats are read (docs/math.md §8):

* the authors' ``torch.save`` files: a dict whose ``'state_dict'`` has keys
  ``module.base_model.*`` / ``module.new_fc.*``, or copies with ``module.`` stripped, or with
  the ``base_model.`` prefix stripped too, or a bare state dict. ``base_model.conv1_temp.*`` (an
  unused leftover in their network) is ignored.
* the project's own: a safetensors file whose keys are our ``state_dict()`` keys
  (``base_model.*``, ``new_fc.*``) and whose metadata records ``arch``, ``num_classes`` and
  ``num_segments`` (also accepted: a torch file ``{"state_dict": ..., "metadata": {...}}``).

Torch files are read with ``torch.load(weights_only=True)``: they cannot run code. Files are
written atomically (:mod:`tdn.fileio`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

from .fileio import atomic_write

FORMAT_NAME = "tdn-checkpoint"
FORMAT_VERSION = "1"
# Keys the authors' TDN_Net holds but never uses in its forward.
IGNORED_PREFIXES = ("base_model.conv1_temp.",)
CLASSIFIER_PREFIX = "new_fc."
SHOWN_KEYS = 8  # how many keys an error message or report lists per category


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

        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = dict(f.metadata() or {})
            return load_file(str(path)), metadata
        except Exception as e:  # SafetensorError and friends: a truncated or corrupt file
            raise CheckpointError(f"cannot read {path} as a safetensors checkpoint: the file is "
                                  f"truncated or corrupt ({e})") from e
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
        raise CheckpointError(f"{source} holds no tensors (keys: {list(obj)[:SHOWN_KEYS]})")
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


# ----------------------------------------------------------------------------------- writing
def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def checkpoint_metadata(model: nn.Module, **extra) -> dict[str, str]:
    """The metadata saved with a model: enough to rebuild it with
    :func:`tdn.models.factory.load_model`."""
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}
    for name in ("arch", "num_classes", "num_segments", "alpha", "beta"):
        if hasattr(model, name):
            meta[name] = str(getattr(model, name))
    meta.update({k: str(v) for k, v in extra.items()})
    return meta


def save_state_dict(state: Mapping[str, torch.Tensor], path: str | os.PathLike,
                    metadata: Mapping[str, str]) -> None:
    """Write ``state`` (keys as given) atomically: safetensors, or a torch file for ``.pt/.pth``."""
    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    metadata = {str(k): str(v) for k, v in metadata.items()}
    if path.suffix in (".pt", ".pth", ".tar"):
        atomic_write(path, lambda tmp: torch.save({"state_dict": tensors, "metadata": metadata},
                                                  tmp))
    else:
        from safetensors.torch import save_file

        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def save_checkpoint(model: nn.Module, path: str | os.PathLike, **extra_metadata) -> None:
    """Save ``model``'s weights and metadata (safetensors unless ``path`` ends in .pt/.pth)."""
    model = unwrap_model(model)
    save_state_dict(model.state_dict(), path, checkpoint_metadata(model, **extra_metadata))
