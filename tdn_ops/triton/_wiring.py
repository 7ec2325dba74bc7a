"""How each Triton operator becomes callable with autograd, on CUDA and under the interpreter.

Every operator has one forward launcher and one backward launcher (plain Python functions that
allocate outputs and launch kernels through ``torch.library.wrap_triton``), one
``setup_context`` and one autograd backward. They are installed twice:

* as ``torch.library.triton_op("tdn_ops_triton::<name>")`` (and ``<name>_backward``) with
  ``register_autograd``, the path for CUDA tensors, which torch.compile traces through (the
  kernels appear in its graph; fake tensors come from running the launcher on them);
* as a ``torch.autograd.Function`` calling the same launchers, the path for everything else.
  On a CPU-only machine under ``TRITON_INTERPRET=1`` a triton_op cannot run (opcheck and
  torch.compile find "0 active drivers"), while the interpreted kernels launch fine directly.

The path is chosen per call from the tensors' device.
"""

from collections.abc import Callable

import torch

from .._registry import autograd_function, class_name
from . import NAMESPACE
from ._common import INTERPRET

# Why the custom ops could not be defined (None when they were, or were not attempted).
REGISTRATION_ERROR: str | None = None


def _device_type(args) -> str:
    for a in args:
        if isinstance(a, torch.Tensor):
            return a.device.type
    return "cpu"


def _define_custom_ops(name: str, forward: Callable, backward: Callable):
    """The forward and backward triton_ops (OpOverloads), or (None, None)."""
    global REGISTRATION_ERROR
    if INTERPRET:  # interpreted kernels are not traceable; the Function path runs them
        return None, None
    try:
        torch.library.triton_op(f"{NAMESPACE}::{name}", forward, mutates_args=())
        torch.library.triton_op(f"{NAMESPACE}::{name}_backward", backward, mutates_args=())
    except Exception as exc:  # e.g. defined twice after a module reload
        REGISTRATION_ERROR = f"{name}: {type(exc).__name__}: {exc}"
        return None, None
    ops = getattr(torch.ops, NAMESPACE)
    return getattr(ops, name).default, getattr(ops, f"{name}_backward").default


def define_operator(name: str, *, forward: Callable, backward: Callable,
                    setup_context: Callable, input_grads: Callable, doc: str) -> Callable:
    """The user-facing function of one operator.

    ``forward``/``backward``: the launchers, with type annotations (triton_op infers the
    schemas from them). ``setup_context(ctx, inputs, output)`` saves what the backward needs.
    ``input_grads(ctx, run_backward, *grad_outputs)`` returns one gradient per forward input,
    calling ``run_backward(*args)`` for the backward launcher (on the path of its device).
    """
    fwd_op, bwd_op = _define_custom_ops(name, forward, backward)

    def run_backward(*args):
        if bwd_op is not None and _device_type(args) == "cuda":
            return bwd_op(*args)
        return backward(*args)

    def autograd_backward(ctx, *grad_outputs):
        return input_grads(ctx, run_backward, *grad_outputs)

    function = autograd_function(
        class_name(name, "TritonFunction"), forward=forward, setup_context=setup_context,
        backward=torch.autograd.function.once_differentiable(autograd_backward),
        doc=f"autograd.Function running the Triton launchers of {name}.", module=__name__)
    if fwd_op is not None:
        torch.library.register_autograd(f"{NAMESPACE}::{name}", autograd_backward,
                                        setup_context=setup_context)

    def call(*args):
        if fwd_op is not None and _device_type(args) == "cuda":
            return fwd_op(*args)
        return function.apply(*args)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = doc
    call.function = function
    call.launch_forward = forward
    call.launch_backward = backward
    return call
