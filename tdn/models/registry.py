"""Model registry: ``build_model(name, ...)`` and ``list_models()``, in the style of timm."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import torch.nn as nn

from .tdn import TDN
from .tsn import TSN

log = logging.getLogger("tdn")

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    """Make ``factory(num_classes=, num_segments=, backend=, dropout=, alpha=, beta=)`` buildable
    by ``name``."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = factory


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(_REGISTRY)


def _tdn(depth: int):
    def factory(num_classes, num_segments, backend, dropout, alpha, beta):
        return TDN(depth, num_classes, num_segments, backend, dropout, alpha, beta)
    return factory


def _tsn(depth: int):
    def factory(num_classes, num_segments, backend, dropout, alpha, beta):
        if alpha is not None or beta is not None:
            raise ValueError("alpha and beta weight TDN's S-TDM fusion; TSN models have none")
        # TSN has no temporal operators, so there is nothing for `backend` to choose.
        return TSN(depth, num_classes, num_segments, dropout)
    return factory


for _depth in (18, 34, 50, 101):
    register_model(f"tdn_resnet{_depth}", _tdn(_depth))
    register_model(f"tsn_resnet{_depth}", _tsn(_depth))


def build_model(name: str, num_classes: int = 174, num_segments: int = 8,
                backend: str | None = None, pretrained: str | os.PathLike | None = None,
                dropout: float = 0.5, alpha: float | None = None,
                beta: float | None = None) -> nn.Module:
    """Build a registered model (see :func:`list_models`).

    Args:
        name: e.g. ``"tdn_resnet50"``, ``"tsn_resnet50"``.
        num_classes: classifier width (174 = Something-Something, 400 = Kinetics-400).
        num_segments: T, the number of 5-frame snippets per clip.
        backend: where TDN's fused operators run: ``None``/``"auto"`` (fastest available),
            ``"cpu"``, ``"cuda"``, ``"triton"``, or ``"reference"`` for the authors' unfused code
            path. Ignored by TSN models, which have no temporal operators.
        pretrained: a local file. ImageNet ResNet weights (torchvision or fbresnet names)
            initialise the backbone (SPEC §2.5); a TDN checkpoint (the authors' or ours, see
            :func:`tdn.load_checkpoint`) loads the whole model. The report is logged on the
            ``"tdn"`` logger and kept as ``model.pretrained_report``.
        dropout: before ``new_fc`` (0.5 in the authors' recipe).
        alpha, beta: S-TDM fusion weights; default (0.5, 0.5) for T=8, else (0.75, 0.25).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    model = _REGISTRY[name](num_classes=num_classes, num_segments=num_segments, backend=backend,
                            dropout=dropout, alpha=alpha, beta=beta)
    if pretrained is not None:
        from .pretrained import load_pretrained

        report = load_pretrained(model, pretrained)
        model.pretrained_report = report
        log.info("%s", report)
    return model
