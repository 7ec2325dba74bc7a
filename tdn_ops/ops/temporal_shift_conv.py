"""temporal_shift_conv: the learnable temporal shift (docs/math.md §5) without its permute
round trips.

``out[:, t, c] = w[c,0,0]*x[:, t-1, c] + w[c,0,1]*x[:, t, c] + w[c,0,2]*x[:, t+1, c]`` with
``x`` viewed as (N, T, C, H, W) and zeros outside the video's segments.
"""

from __future__ import annotations

import torch

from .. import _checks as check
from .._dispatch import call, native_op
from .._layout import empty_like_layout
from .._registry import register_operator

NAME = "temporal_shift_conv"


def check_shift_args(x, weight, num_segments) -> None:
    """Checks shared with excite_shift."""
    check.tensor("x", x, ndim=4, layout="(N*T, C, H, W)")
    check.tensor_like("weight", weight, "x", x, ndim=3, layout="(C, 1, 3)")
    check.temporal_weight("weight", weight, x.shape[1])
    check.positive_int("num_segments", num_segments)
    check.segments_divide("x", x, num_segments)


def _fake(x, weight, num_segments):
    return empty_like_layout(x, x.shape)


def _backward_fake(grad_out, x, weight, num_segments):
    return empty_like_layout(x, x.shape), weight.new_empty(weight.shape)


def _setup_context(ctx, inputs, output):
    x, weight, num_segments = inputs
    ctx.save_for_backward(x, weight)
    ctx.num_segments = num_segments


def _backward(ctx, grad_out):
    x, weight = ctx.saved_tensors
    grad_x, grad_weight = native_op(NAME + "_backward")(grad_out, x, weight, ctx.num_segments)
    return grad_x, grad_weight, None


TemporalShiftConvFunction = register_operator(
    NAME, fake=_fake, backward_fake=_backward_fake, setup_context=_setup_context,
    backward=_backward)


def temporal_shift_conv(x: torch.Tensor, weight: torch.Tensor, num_segments: int, *,
                        backend: str | None = "auto") -> torch.Tensor:
    """Depthwise temporal convolution (kernel 3, zero padding) over each video's segments.

    ``x``: (N*T, C, H, W); ``weight``: (C, 1, 3) as held by ``shift.conv.weight``. Returns a
    tensor of ``x``'s shape and memory format; gradients flow to ``x`` and ``weight``.
    """
    return call(NAME, backend, check_shift_args, x, weight, num_segments)
