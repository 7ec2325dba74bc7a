"""Loading of the compiled kernels (``tdn_ops._C``) and questions about what they provide.

A source checkout without a built extension still works: the operators fall back to the
``"reference"`` backend, and a single warning says so.
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["NATIVE_AVAILABLE", "NATIVE_IMPORT_ERROR", "has_native_autograd", "has_native_kernel"]

NATIVE_IMPORT_ERROR: str | None = None
try:
    from . import _C  # noqa: F401  (registers torch.ops.tdn_ops.*)

    NATIVE_AVAILABLE = True
except ImportError as exc:  # not built, or built against another torch
    NATIVE_AVAILABLE = False
    NATIVE_IMPORT_ERROR = str(exc)
    warnings.warn(
        "tdn_ops: the compiled extension tdn_ops._C is not available "
        f"({exc}); using the plain-PyTorch 'reference' backend. "
        "Build it with `pip install --no-build-isolation .`.",
        RuntimeWarning,
        stacklevel=2,
    )


def has_native_kernel(op_name: str, device_type: str) -> bool:
    """True when ``torch.ops.tdn_ops.<op_name>`` has a kernel for ``device_type`` ("cpu"/"cuda")."""
    if not NATIVE_AVAILABLE:
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(device_type)
    if key is None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"tdn_ops::{op_name}", key)


def has_native_autograd(op_name: str) -> bool:
    """True when ``torch.ops.tdn_ops.<op_name>`` has an autograd kernel before Python adds one:
    the C++ Functions of ``csrc/autograd.cpp``, registered when ``tdn_ops._C`` loads."""
    if not NATIVE_AVAILABLE:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"tdn_ops::{op_name}", "Autograd")
