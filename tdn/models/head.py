"""The classification head TDN and TSN share: argument checks and the ``new_fc`` classifier.

Both models classify every segment with ``new_fc`` on the backbone's pooled features and
average the segment logits (:func:`tdn.models.clips.segment_consensus`).
"""

from __future__ import annotations

import torch.nn as nn


def check_head_args(num_classes: int, num_segments: int, dropout: float) -> None:
    """A ValueError naming the argument for a class count, segment count or dropout that no
    model can be built with."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if isinstance(num_segments, bool) or not isinstance(num_segments, int) or num_segments < 1:
        raise ValueError(f"num_segments must be a positive int, got {num_segments!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")


def new_classifier(feature_dim: int, num_classes: int) -> nn.Linear:
    """``new_fc`` with the authors' TSN initialisation: weights N(0, 0.001), bias 0."""
    fc = nn.Linear(feature_dim, num_classes)
    nn.init.normal_(fc.weight, 0.0, 0.001)
    nn.init.zeros_(fc.bias)
    return fc
