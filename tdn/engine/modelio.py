"""Building models for training and loading them back for evaluation and prediction."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn as nn

from ..checkpoint_io import checkpoint_metadata
from ..models.factory import build_model, load_model_and_metadata

DEFAULT_INPUT_SIZE = 224  # for files that do not record the size the model was trained at


def model_config(arch: str, num_classes: int, num_segments: int, dropout: float,
                 input_size: int) -> dict[str, Any]:
    """What a checkpoint records so evaluate/predict can rebuild the network alone."""
    return {"arch": arch, "num_classes": int(num_classes), "num_segments": int(num_segments),
            "dropout": float(dropout), "input_size": int(input_size)}


def build_from_config(config: dict, backend: str | None = None,
                      pretrained: str | None = None) -> nn.Module:
    return build_model(config["arch"], num_classes=config["num_classes"],
                       num_segments=config["num_segments"], backend=backend,
                       pretrained=pretrained, dropout=config.get("dropout", 0.5))


def load_model_for_inference(
    checkpoint: str, arch: str | None = None, num_classes: int | None = None,
    num_segments: int | None = None, backend: str | None = None,
    device: torch.device | str = "cpu", optimize: bool = False,
) -> tuple[nn.Module, dict]:
    """A model in eval mode with ``checkpoint``'s weights, and the config it was built from.

    Reads every format :func:`tdn.load_model` reads: this project's training checkpoints
    (``checkpoint_last.pt`` / ``checkpoint_best.pt``) and model files (safetensors or torch),
    and the authors' released checkpoints in any prefix form. Explicit arguments override
    what the file records. Loading is strict.

    ``optimize``: for inference without gradients. On a CPU, fold the batch norms and pack
    the convolutions for oneDNN (:func:`tdn.pack_for_cpu_inference`: same logits to float
    rounding, faster); elsewhere fold the batch norms. The authors' code path
    (``backend="reference"``) is left as it is.
    """
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    model, metadata = load_model_and_metadata(checkpoint, backend, num_segments, arch=arch,
                                              num_classes=num_classes)
    config = model_config(model.arch, model.num_classes, model.num_segments,
                          dropout=metadata_number(metadata, "dropout", float, 0.5, checkpoint),
                          input_size=metadata_number(metadata, "input_size", int,
                                                     DEFAULT_INPUT_SIZE, checkpoint))
    model = model.to(device).eval()
    if optimize and backend != "reference":
        if torch.device(device).type == "cpu":
            from ..models.cpu_inference import pack_for_cpu_inference

            pack_for_cpu_inference(model)
        else:
            from ..models.fold import fold_batch_norm

            fold_batch_norm(model)
    return model, config


def metadata_number(metadata: dict, field: str, kind: type, default, source: str):
    """``metadata[field]`` read as a ``kind`` (``default`` when absent); a value that is not
    one is a ValueError naming the field and the file."""
    text = metadata.get(field)
    if text is None:
        return default
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: metadata field {field!r} should be "
                         f"{'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if isinstance(value, float) and value != value:
        raise ValueError(f"{source}: metadata field {field!r} is NaN")
    return value


def training_metadata(network: nn.Module, config: dict) -> dict[str, str]:
    """String metadata stored in training checkpoints, in :mod:`tdn.checkpoint_io`'s format,
    so ``tdn.load_model`` and ``tdn evaluate`` rebuild the model from the file alone."""
    return checkpoint_metadata(network, dropout=config["dropout"],
                               input_size=config["input_size"])


def checkpoint_class_names(checkpoint: str) -> list[str] | None:
    """Class names a training checkpoint recorded (``tdn train --class-names``), if any."""
    if not checkpoint.endswith((".pt", ".pth", ".tar")):
        return None
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception:  # not a torch file after all: the caller has the real error already
        return None
    names = state.get("class_names") if isinstance(state, dict) else None
    return list(names) if names else None
