"""Dispatch: which implementation (backend) an operator call runs on, and the call itself.

Every public operator ends in :func:`call`: cast under autocast, check the arguments, resolve
the backend and run it. ``backend="auto"`` (the default) picks per operator and device:

* CPU tensors: the C++ kernels (``"cpu"``) when the extension is built, else ``"reference"``.
* CUDA tensors: the order in :data:`CUDA_PREFERENCE`, the first one that is available.
* anything else: ``"reference"``.

The environment variable ``TDN_OPS_BACKEND`` overrides ``"auto"`` (it is a preference: where
the named backend cannot run on the tensors' device, ``"auto"`` is used). An explicit
``backend=`` argument is a demand: it raises if that backend cannot run the call.

Within the ``"triton"`` backend, :mod:`tdn_ops.triton` itself picks its path per call (a
``triton_op`` on CUDA tensors, a plain autograd Function under the interpreter).
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable

import torch

from ._extension import NATIVE_AVAILABLE, NATIVE_IMPORT_ERROR, has_native_kernel
from ._operators import OPERATORS

__all__ = ["BACKENDS", "CUDA_PREFERENCE", "OPERATORS", "available_backends", "call",
           "native_op", "resolve_backend", "run", "triton_available"]

BACKENDS = ("auto", "reference", "cpu", "cuda", "triton")

# Fastest first, per operator, on CUDA devices. Filled from benchmarks/results/ once the GPU
# benchmarks have run (see README, "Backends"); until then the CUDA C++ kernels come first.
CUDA_PREFERENCE: dict[str, tuple[str, ...]] = {op: ("cuda", "triton") for op in OPERATORS}


# ------------------------------------------------------------------------------ resolution

def triton_available(device: torch.device) -> bool:
    """Triton kernels run on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1`` when
    they were defined in interpreter mode (compiled kernels cannot take CPU tensors)."""
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return False
    try:
        from . import triton as _triton  # noqa: F401
    except ImportError:
        return False
    return _triton.AVAILABLE and (device.type == "cuda" or _triton.INTERPRET)


def _available(backend: str, op_name: str, device: torch.device) -> bool:
    if backend == "reference":
        return True
    if backend in ("cpu", "cuda"):
        return device.type == backend and has_native_kernel(op_name, backend)
    if backend == "triton":  # the inference operators have no Triton kernels
        return op_name in OPERATORS and triton_available(device)
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
    """The concrete operator backend (never ``"auto"``) that runs ``op_name`` on ``device``."""
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


@functools.lru_cache(maxsize=256)
def _resolve_cached(name: str, backend: str | None, device_type: str, *environment) -> str:
    return resolve_backend(name, backend, torch.device(device_type))


# The process environment as os.environ holds it: on POSIX os.environ writes through to this
# dict of bytes, so one C-level lookup reads what os.environ.get would, without its four
# Python calls (see call() for why those count).
_ENVIRON = getattr(os.environ, "_data", None) if os.name == "posix" else None


def _environment() -> tuple:
    """The raw values of the two variables that steer ``"auto"``: part of every cache key."""
    if _ENVIRON is not None:
        return _ENVIRON.get(b"TDN_OPS_BACKEND"), _ENVIRON.get(b"TRITON_INTERPRET")
    return os.environ.get("TDN_OPS_BACKEND"), os.environ.get("TRITON_INTERPRET")


@torch.compiler.assume_constant_result
def _resolve(name: str, backend: str | None, device_type: str) -> str:
    # Under torch.compile the choice is made once, while tracing, and baked into the graph:
    # the lookups behind it (environment, dispatcher tables) are not traceable.
    return _resolve_cached(name, backend, device_type, *_environment())


# ------------------------------------------------------------------------------- the call

_NATIVE_OPS: dict[str, torch._ops.OpOverload] = {}


def native_op(name: str):
    """``torch.ops.tdn_ops.<name>``, looked up on first use (the extension may be missing) and
    then kept, since operators sit on hot paths. torch.compile traces the plain lookup."""
    if torch.compiler.is_compiling():
        return getattr(torch.ops.tdn_ops, name).default
    op = _NATIVE_OPS.get(name)
    if op is None:
        op = _NATIVE_OPS[name] = getattr(torch.ops.tdn_ops, name).default
    return op


def run(name: str, backend: str | None, device: torch.device, args: tuple):
    """Call operator ``name`` with already checked ``args`` on the backend resolved for
    ``device``."""
    impl = _resolve(name, backend, device.type)
    if impl == "reference":
        from . import reference

        return getattr(reference, name)(*args)
    if impl == "triton":
        from . import triton

        return getattr(triton, name)(*args)
    return native_op(name)(*args)


# One call answers "is autocast on for any device?" (0.2 us), the common case on hot paths;
# the per-device query below runs only when it is.
_any_autocast_enabled = getattr(torch._C, "_is_any_autocast_enabled", lambda: True)


def autocast_inputs(*args):
    """Under ``torch.autocast``, run in the autocast dtype, like the convolutions around us.

    Every floating-point tensor is cast to the autocast dtype of the first tensor's device;
    scalars, and everything outside autocast, are returned unchanged (tensors must then already
    share one dtype).
    """
    if not _any_autocast_enabled():
        return args
    first = next((a for a in args if isinstance(a, torch.Tensor)), None)
    if first is None:
        return args
    device_type = first.device.type
    if device_type not in ("cpu", "cuda") or not torch.is_autocast_enabled(device_type):
        return args
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                 for a in args)


def call(name: str, backend: str | None, check: Callable[..., None], *args):
    """The body of every public operator: autocast, ``check(*args)``, then run on the backend
    resolved for the device of the first argument (every operator's primary tensor).

    Written for the eager training step, where it runs before every kernel. Between two calls
    of an operator in a model (or in the benchmark, between the reference's calls) the
    interpreter's working set is evicted, and each Python frame on this path then costs
    microseconds: on the 2-core benchmark machine the former path (autocast_inputs, run,
    _resolve, os.environ.get, native_op) took ~30 us of a 0.2 ms layer-3 forward+backward.
    So eagerly: autocast only when it is on, one dict lookup for the implementation (the native
    operator's C++ entry point itself), no frames in between. Under Dynamo the traced path
    (:func:`run`) resolves once and calls the OpOverload, which the tracer understands.
    """
    if _any_autocast_enabled():
        args = autocast_inputs(*args)
    check(*args)
    if _is_dynamo_compiling():
        return run(name, backend, args[0].device, args)
    first = args[0]
    # .is_cpu before .device.type: the latter builds a torch.device (1 us against 0.2 us).
    device_type = "cpu" if first.is_cpu else first.device.type
    if _ENVIRON is not None:  # _environment(), inlined: a frame less on every call
        key = (name, backend, device_type, _ENVIRON.get(b"TDN_OPS_BACKEND"),
               _ENVIRON.get(b"TRITON_INTERPRET"))
    else:
        key = (name, backend, device_type) + _environment()
    entry = _EAGER_ENTRIES.get(key)
    if entry is None:
        entry = _EAGER_ENTRIES[key] = _eager_entry(name, resolve_backend(
            name, backend, first.device))
    return entry(*args)


# True only while Dynamo traces (torch.compile, strict export): it then traces run(), whose
# OpOverload call it understands. Elsewhere, non-strict export included, the C++ entry point
# runs exactly what OpOverload.__call__ would. One frame, against is_compiling's two.
_is_dynamo_compiling = torch.compiler.is_dynamo_compiling

# (operator, backend, device type, environment) -> the callable that runs it eagerly.
_EAGER_ENTRIES: dict[tuple, Callable] = {}


def _eager_entry(name: str, impl: str) -> Callable:
    if impl in ("reference", "triton"):
        # Looked up at each call, as module attributes (which tests and users may replace).
        module = importlib.import_module(f"{__package__}.{impl}")
        return lambda *args: getattr(module, name)(*args)
    return native_op(name)._op  # OpOverload.__call__ without its Python frame
