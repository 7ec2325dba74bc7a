"""Wiring shared by the operator modules: fake kernels, autograd and the Function classes.

Each operator module (``tdn_ops/ops/<name>.py``) defines its checks, its fake kernels, one
``setup_context`` and one ``backward``. :func:`register_operator` installs them on the
``torch.ops.tdn_ops`` operator (when the extension is built), and :func:`function_class` builds
the ``torch.autograd.Function`` for users who work at that level from the *same* backward, so
there is exactly one backward per operator.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import torch

from ._extension import NATIVE_AVAILABLE


def register_operator(
    name: str,
    *,
    fake: Callable,
    backward_fake: Callable,
    setup_context: Callable,
    backward: Callable,
) -> None:
    if not NATIVE_AVAILABLE:
        return
    torch.library.register_fake(f"tdn_ops::{name}")(fake)
    torch.library.register_fake(f"tdn_ops::{name}_backward")(backward_fake)
    torch.library.register_autograd(f"tdn_ops::{name}", backward, setup_context=setup_context)


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


def function_class(class_name: str, op_name: str, setup_context: Callable,
                   backward: Callable, doc: str) -> type[torch.autograd.Function]:
    """A ``torch.autograd.Function`` running the native operator with its registered backward."""

    def forward(*args):
        return native_op(op_name)(*args)

    return type(class_name, (torch.autograd.Function,), {
        "__doc__": doc,
        "__module__": "tdn_ops",
        "forward": staticmethod(forward),
        "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward),
    })


@functools.lru_cache(maxsize=256)
def _resolve_cached(name: str, backend: str | None, device_type: str, preference: str | None,
                    interpret: str | None) -> str:
    from ._dispatch import resolve_backend

    return resolve_backend(name, backend, torch.device(device_type))


@torch.compiler.assume_constant_result
def _resolve(name: str, backend: str | None, device_type: str) -> str:
    # Under torch.compile the choice is made once, while tracing, and baked into the graph:
    # the lookups behind it (environment, dispatcher tables) are not traceable. Eagerly it is
    # cached per (operator, backend, device, environment): operators sit on hot paths.
    return _resolve_cached(name, backend, device_type, os.environ.get("TDN_OPS_BACKEND"),
                           os.environ.get("TRITON_INTERPRET"))


def run(name: str, backend: str | None, device: torch.device, args: tuple):
    """Call operator ``name`` on the backend resolved for ``device``."""
    impl = _resolve(name, backend, device.type)
    if impl == "reference":
        from . import reference

        return getattr(reference, name)(*args)
    if impl == "triton":
        from . import triton

        return getattr(triton, name)(*args)
    return native_op(name)(*args)
