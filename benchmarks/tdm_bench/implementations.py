"""The implementations a benchmark compares: the eager reference, torch.compile of it, and the
fused backends of ``tdn_ops`` that can run on the device.

Labels used in every table and results file:
    "eager"     the unfused PyTorch of ``tdn_ops.reference`` (the authors' op sequence)
    "compiled"  ``torch.compile`` of that same reference function (Inductor, static shapes)
    "cpu", "cuda", "triton"   the ``tdn_ops`` backends of those names
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

import tdn_ops
from tdn_ops import reference

BASELINES = ("eager", "compiled")
FUSED_BACKENDS = ("cpu", "cuda", "triton")


def fused_backends(device: torch.device, op_names: tuple[str, ...] | None = None) -> list[str]:
    """The fused backends that run every one of ``op_names`` (default: all) on ``device``.

    Triton on a CPU (``TRITON_INTERPRET=1``) is an interpreter for debugging, not a contender,
    so it is left out.
    """
    from tdn_ops._dispatch import resolve_backend  # per-operator availability

    names = op_names or tdn_ops.OPERATORS
    found = []
    for backend in FUSED_BACKENDS:
        if backend == "triton" and device.type != "cuda":
            continue
        try:
            for name in names:
                resolve_backend(name, backend, device)
        except (RuntimeError, ValueError):
            continue
        found.append(backend)
    return found


def operator_fn(op: str, impl: str) -> Callable:
    """A callable with the operator's positional signature, running implementation ``impl``."""
    ref = getattr(reference, op)
    if impl == "eager":
        return ref
    if impl == "compiled":
        # A fresh Dynamo state per shape: every benchmark compiles its own static-shape graph
        # instead of piling recompilations onto one cache entry (whose limit would silently
        # fall back to eager).
        torch._dynamo.reset()
        return torch.compile(ref, dynamic=False)
    if impl in FUSED_BACKENDS:
        return functools.partial(getattr(tdn_ops, op), backend=impl)
    raise ValueError(f"impl must be one of {BASELINES + FUSED_BACKENDS}, got {impl!r}")
