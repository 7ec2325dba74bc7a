"""Choosing the implementation (backend) an operator call runs on.

``backend="auto"`` (the default) picks per operator and device:

* CPU tensors: the C++ kernels (``"cpu"``) when the extension is built, else ``"reference"``.
* CUDA tensors: the order in :data:`CUDA_PREFERENCE`, the first one that is available.
* anything else: ``"reference"``.

The environment variable ``TDN_OPS_BACKEND`` overrides ``"auto"`` (it is a preference: where
the named backend cannot run on the tensors' device, ``"auto"`` is used). An explicit
``backend=`` argument is a demand: it raises if that backend cannot run the call.
"""

from __future__ import annotations

import os

import torch

from . import reference as _reference
from ._extension import NATIVE_AVAILABLE, NATIVE_IMPORT_ERROR, has_native_kernel

BACKENDS = ("auto", "reference", "cpu", "cuda", "triton")
# The seven fused operators: every one has a reference of the same name.
OPERATORS = tuple(_reference.__all__)

# Fastest first, per operator, on CUDA devices. Filled from benchmarks/results/ once the GPU
# benchmarks have run (see README, "Backends"); until then the CUDA C++ kernels come first.
CUDA_PREFERENCE: dict[str, tuple[str, ...]] = {op: ("cuda", "triton") for op in OPERATORS}


def triton_available(device: torch.device) -> bool:
    """Triton kernels run on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1``."""
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return False
    try:
        from . import triton as _triton  # noqa: F401
    except ImportError:
        return False
    return _triton.AVAILABLE


def _available(backend: str, op_name: str, device: torch.device) -> bool:
    if backend == "reference":
        return True
    if backend in ("cpu", "cuda"):
        return device.type == backend and has_native_kernel(op_name, backend)
    if backend == "triton":
        return triton_available(device)
    return False


def _auto(op_name: str, device: torch.device) -> str:
    if device.type == "cpu":
        return "cpu" if _available("cpu", op_name, device) else "reference"
    if device.type == "cuda":
        for candidate in CUDA_PREFERENCE.get(op_name, ()):
            if _available(candidate, op_name, device):
                return candidate
    return "reference"


def resolve_backend(op_name: str, backend: str | None, device: torch.device) -> str:
    """The concrete backend (never ``"auto"``) that runs ``op_name`` on ``device``."""
    if backend is None:
        backend = "auto"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        preferred = os.environ.get("TDN_OPS_BACKEND", "auto") or "auto"
        if preferred not in BACKENDS:
            raise ValueError(
                f"environment variable TDN_OPS_BACKEND must be one of {BACKENDS}, got {preferred!r}")
        if preferred != "auto" and _available(preferred, op_name, device):
            return preferred
        return _auto(op_name, device)
    if _available(backend, op_name, device):
        return backend
    if backend in ("cpu", "cuda") and device.type != backend:
        raise ValueError(f"backend={backend!r} runs on {backend} tensors, but the inputs of "
                         f"{op_name} are on {device}")
    if backend in ("cpu", "cuda"):
        why = NATIVE_IMPORT_ERROR if not NATIVE_AVAILABLE else "built without these kernels"
        raise RuntimeError(f"backend={backend!r} for {op_name} is not available: tdn_ops._C {why}")
    raise RuntimeError(f"backend='triton' for {op_name} is not available on {device}: it needs "
                       "Triton and a CUDA device (or TRITON_INTERPRET=1 for CPU tensors)")


def available_backends(device: str | torch.device = "cpu") -> list[str]:
    """The backends that can run every operator on ``device``."""
    device = torch.device(device)
    return [b for b in BACKENDS[1:] if all(_available(b, op, device) for op in OPERATORS)]


def autocast_inputs(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Under ``torch.autocast``, run in the autocast dtype, like the convolutions around us.

    Every floating-point input is cast to the autocast dtype of the inputs' device; outside
    autocast the tensors are returned unchanged (and must already share one dtype).
    """
    device_type = tensors[0].device.type
    if device_type not in ("cpu", "cuda") or not torch.is_autocast_enabled(device_type):
        return tensors
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(t.to(dtype) if t.is_floating_point() else t for t in tensors)
