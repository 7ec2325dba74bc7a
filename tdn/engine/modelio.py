"""Building models for training and loading them back for evaluation and prediction."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn as nn


def model_config(arch: str, num_classes: int, num_segments: int, dropout: float,
                 input_size: int) -> dict[str, Any]:
    """What a checkpoint records so evaluate/predict can rebuild the network alone."""
    return {"arch": arch, "num_classes": int(num_classes), "num_segments": int(num_segments),
            "dropout": float(dropout), "input_size": int(input_size)}


def build_from_config(config: dict, backend: str | None = None,
                      pretrained: str | None = None) -> nn.Module:
    import tdn

    return tdn.build_model(config["arch"], num_classes=config["num_classes"],
                           num_segments=config["num_segments"], backend=backend,
                           pretrained=pretrained, dropout=config.get("dropout", 0.5))


def load_model_for_inference(
    checkpoint: str, arch: str | None = None, num_classes: int | None = None,
    num_segments: int | None = None, backend: str | None = None,
    device: torch.device | str = "cpu",
) -> tuple[nn.Module, dict]:
    """A model in eval mode with ``checkpoint``'s weights, and the config it was built from.

    Reads every format :mod:`tdn.checkpoint` reads: this project's training checkpoints
    (``checkpoint_last.pt`` / ``checkpoint_best.pt``) and model files (safetensors or torch),
    and the authors' released checkpoints in any prefix form. Architecture and class count
    come from the file's metadata or, failing that, its keys; ``num_segments`` from the
    metadata, else 8. Explicit arguments override them. Loading is strict.
    """
    from ..checkpoint import describe, load_checkpoint, read_state_dict
    import tdn

    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    state, metadata = read_state_dict(checkpoint)
    info = describe(state, metadata, num_segments)
    config = {
        "arch": arch or info["arch"],
        "num_classes": num_classes or int(info["num_classes"]),
        "num_segments": int(info["num_segments"]),
        "dropout": float(metadata.get("dropout", 0.5)),
        "input_size": int(metadata.get("input_size", 224)),
    }
    extra = {}
    if config["arch"].startswith("tdn"):
        extra = {name: float(metadata[name]) for name in ("alpha", "beta") if name in metadata}
    model = tdn.build_model(config["arch"], num_classes=config["num_classes"],
                            num_segments=config["num_segments"], backend=backend,
                            dropout=config["dropout"], **extra)
    # the segment count was chosen above; the file's value only matters through it
    load_checkpoint(model, state, metadata={k: v for k, v in metadata.items()
                                            if k != "num_segments"})
    return model.to(device).eval(), config


def training_metadata(network: nn.Module, config: dict) -> dict[str, str]:
    """String metadata stored in training checkpoints, in :mod:`tdn.checkpoint`'s format, so
    ``tdn.load_model`` and ``tdn evaluate`` rebuild the model from the file alone."""
    from ..checkpoint import checkpoint_metadata

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
