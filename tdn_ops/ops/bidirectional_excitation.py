"""bidirectional_excitation: ``x * (0.5 + 0.5*sigmoid(y_fwd) + 0.5*sigmoid(y_bwd))``.

The L-TDM output (docs/math.md §4): two sigmoids, subtractions, products and a sum in one pass.
"""

from __future__ import annotations

import torch

from .. import _checks as check
from .._dispatch import call, native_op
from .._layout import empty_like_layout
from .._registry import register_operator

NAME = "bidirectional_excitation"


def _check(x, y_fwd, y_bwd) -> None:
    check.tensor("x", x)
    check.tensor_like("y_fwd", y_fwd, "x", x, same_shape=True)
    check.tensor_like("y_bwd", y_bwd, "x", x, same_shape=True)


def _fake(x, y_fwd, y_bwd):
    return empty_like_layout(x, x.shape)


def _backward_fake(grad_out, x, y_fwd, y_bwd):
    return tuple(empty_like_layout(x, x.shape) for _ in range(3))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_out):
    x, y_fwd, y_bwd = ctx.saved_tensors
    return native_op(NAME + "_backward")(grad_out, x, y_fwd, y_bwd)


BidirectionalExcitationFunction = register_operator(
    NAME, fake=_fake, backward_fake=_backward_fake, setup_context=_setup_context,
    backward=_backward)


def bidirectional_excitation(x: torch.Tensor, y_fwd: torch.Tensor, y_bwd: torch.Tensor, *,
                             backend: str | None = "auto") -> torch.Tensor:
    """Excite ``x`` by both temporal directions: ``x * (0.5 + 0.5*σ(y_fwd) + 0.5*σ(y_bwd))``.

    ``x``, ``y_fwd`` and ``y_bwd`` share one shape (``(N*T, C, H, W)`` in TDN); the result has
    that shape and ``x``'s memory format. Gradients flow to all three.
    """
    return call(NAME, backend, _check, x, y_fwd, y_bwd)
