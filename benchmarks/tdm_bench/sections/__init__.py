"""The three sections of a run, one module each, named as ``--sections`` names them.

Each section module has ``planned_steps(ctx)`` (for the progress bar) and ``run(ctx)``, which
appends its rows to ``ctx.results``; :mod:`.common` holds what they share.
"""

from __future__ import annotations

import importlib
from types import ModuleType

SECTIONS = ("ops", "modules", "model")


def load(name: str) -> ModuleType:
    """The section's module, imported on demand: ``ops`` runs without the network (``tdn``)."""
    if name not in SECTIONS:
        raise ValueError(f"section must be one of {SECTIONS}, got {name!r}")
    return importlib.import_module(f"{__name__}.{name}")
