"""Registration shared by the operator modules: fake kernels, autograd and the Function classes.

Each operator module (``tdn_ops/ops/<name>.py``) defines its checks, its fake kernels, one
``setup_context`` and one ``backward``, and hands them to :func:`register_operator`, which
installs them on the ``torch.ops.tdn_ops`` operator (when the extension is built) and returns
the ``torch.autograd.Function`` for users who work at that level, built from the *same*
backward: there is exactly one backward per operator. :func:`autograd_function` is also how the
Triton backend builds its Functions.

Operators whose autograd the extension registers in C++ (``csrc/autograd.cpp``, the Autograd
dispatch key) keep it: there the backward is the same ``*_backward`` operator, called without
the ~0.1 ms per call that torch.library's Python autograd costs. Only the others get the
Python ``backward`` as their autograd.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._dispatch import native_op
from ._extension import NATIVE_AVAILABLE, has_native_autograd


def class_name(op_name: str, suffix: str = "Function") -> str:
    """``"cross_segment_diff"`` -> ``"CrossSegmentDiffFunction"``."""
    return "".join(part.title() for part in op_name.split("_")) + suffix


def autograd_function(name: str, *, forward: Callable, setup_context: Callable,
                      backward: Callable, doc: str, module: str) -> type[torch.autograd.Function]:
    """A ``torch.autograd.Function`` subclass ``name`` from plain functions (forward without
    ``ctx``, the ``setup_context(ctx, inputs, output)`` style)."""
    return type(name, (torch.autograd.Function,), {
        "__doc__": doc,
        "__module__": module,
        "forward": staticmethod(forward),
        "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward),
    })


def register_operator(
    name: str,
    *,
    fake: Callable,
    backward_fake: Callable,
    setup_context: Callable,
    backward: Callable,
) -> type[torch.autograd.Function]:
    """Install the fake kernels and autograd of ``tdn_ops::<name>``; returns its Function class
    (``<Name>Function``, running the native operator with the same backward)."""
    if NATIVE_AVAILABLE:
        torch.library.register_fake(f"tdn_ops::{name}")(fake)
        torch.library.register_fake(f"tdn_ops::{name}_backward")(backward_fake)
        if not has_native_autograd(name):
            torch.library.register_autograd(f"tdn_ops::{name}", backward,
                                            setup_context=setup_context)

    def forward(*args):
        return native_op(name)(*args)

    return autograd_function(
        class_name(name), forward=forward, setup_context=setup_context, backward=backward,
        doc=f"autograd.Function form of :func:`{name}` (native kernels).", module="tdn_ops")
