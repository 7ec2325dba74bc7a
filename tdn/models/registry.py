"""The model registry: names -> entry points, in the style of timm's ``@register_model``.

A leaf module (it imports nothing from the project): every architecture registers itself
where it is defined, with the decorator, and :func:`tdn.models.factory.build_model` looks the
name up here. An entry point takes the keyword arguments ``num_classes, num_segments, backend,
dropout, alpha, beta`` and returns the network.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

EntryPoint = Callable[..., nn.Module]

_ENTRY_POINTS: dict[str, EntryPoint] = {}


def register_model(entry_point: EntryPoint) -> EntryPoint:
    """Decorator: make ``entry_point`` buildable under its function name.

    >>> @register_model
    ... def tdn_resnet50(**kwargs):
    ...     return TDN(50, **kwargs)
    """
    if not callable(entry_point):
        raise TypeError(f"register_model decorates a function, got {entry_point!r}")
    name = entry_point.__name__
    if name in _ENTRY_POINTS:
        raise ValueError(f"model {name!r} is already registered")
    _ENTRY_POINTS[name] = entry_point
    return entry_point


def list_models() -> list[str]:
    """Names accepted by :func:`tdn.build_model`."""
    return sorted(_ENTRY_POINTS)


def model_entry_point(name: str) -> EntryPoint:
    """The function registered as ``name``; a ValueError listing the choices otherwise."""
    if name not in _ENTRY_POINTS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _ENTRY_POINTS[name]
