"""excite_shift: bidirectional excitation followed by the temporal shift, in one pass.

The end of every TDN bottleneck's L-TDM and its shift (docs/math.md §3-5). Neither the forward
nor the backward kernels materialise the excited tensor: they recompute it where it is needed.
"""

from __future__ import annotations

import torch

from .. import _checks as check
from .._dispatch import call, native_op
from .._layout import empty_like_layout
from .._registry import register_operator
from .temporal_shift_conv import check_shift_args

NAME = "excite_shift"


def _check(x, y_fwd, y_bwd, weight, num_segments) -> None:
    check_shift_args(x, weight, num_segments)
    check.tensor_like("y_fwd", y_fwd, "x", x, same_shape=True)
    check.tensor_like("y_bwd", y_bwd, "x", x, same_shape=True)


def _fake(x, y_fwd, y_bwd, weight, num_segments):
    return empty_like_layout(x, x.shape)


def _backward_fake(grad_out, x, y_fwd, y_bwd, weight, num_segments):
    grads = tuple(empty_like_layout(x, x.shape) for _ in range(3))
    return grads + (weight.new_empty(weight.shape),)


def _setup_context(ctx, inputs, output):
    x, y_fwd, y_bwd, weight, num_segments = inputs
    ctx.save_for_backward(x, y_fwd, y_bwd, weight)
    ctx.num_segments = num_segments


def _backward(ctx, grad_out):
    x, y_fwd, y_bwd, weight = ctx.saved_tensors
    grads = native_op(NAME + "_backward")(grad_out, x, y_fwd, y_bwd, weight, ctx.num_segments)
    return tuple(grads) + (None,)


ExciteShiftFunction = register_operator(
    NAME, fake=_fake, backward_fake=_backward_fake, setup_context=_setup_context,
    backward=_backward)


def excite_shift(x: torch.Tensor, y_fwd: torch.Tensor, y_bwd: torch.Tensor,
                 weight: torch.Tensor, num_segments: int, *,
                 backend: str | None = "auto") -> torch.Tensor:
    """``temporal_shift_conv(bidirectional_excitation(x, y_fwd, y_bwd), weight, num_segments)``.

    ``x``, ``y_fwd``, ``y_bwd``: (N*T, C, H, W); ``weight``: (C, 1, 3). Gradients flow to all
    four tensors.
    """
    return call(NAME, backend, _check, x, y_fwd, y_bwd, weight, num_segments)
