"""``build_model(pretrained=path)``: tell ImageNet weights from TDN checkpoints and load them."""

from __future__ import annotations

import os

import torch.nn as nn


def load_pretrained(model: nn.Module, path: str | os.PathLike):
    """Load ``path`` into ``model``: a whole-model checkpoint if it holds a classifier
    (``new_fc``) or TDN's S-TDM stem (``conv1_5``), else ImageNet ResNet weights."""
    from ..checkpoint import is_video_checkpoint, load_checkpoint, read_state_dict
    from ..imagenet import load_imagenet_weights

    state, metadata = read_state_dict(path)
    if is_video_checkpoint(state):
        return load_checkpoint(model, state, metadata=metadata)
    return load_imagenet_weights(model, state, source=str(path))
