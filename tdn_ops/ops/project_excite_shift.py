"""project_excite_shift: the whole tail of an L-TDM and its temporal shift, in one operator.

``y_d = scale[d] * (weight @ mixed[d]) + bias[d]`` per pixel (the L-TDM's 1x1 projection
``conv3`` of the multiscale mixture of direction ``d``, followed by its batch norm ``bn3``
written as an affine), then ``temporal_shift_conv(x * (0.5 + 0.5*sigmoid(y_0) +
0.5*sigmoid(y_1)), shift_weight, T)`` (docs/math.md §4-§6).

Neither the C-channel logits ``y_d`` nor the excited tensor are ever materialised, in the
forward or the backward: the kernels recompute them tile by tile from ``mixed``, which has
``c = C/16`` channels. The backward saves only the inputs.
"""

from __future__ import annotations

import torch

from .. import _checks as check
from .._dispatch import call, native_op
from .._layout import empty_like_layout, empty_stacked_like_layout
from .._registry import register_operator

NAME = "project_excite_shift"


def _check(x, mixed, weight, scale, bias, shift_weight, num_segments) -> None:
    check.tensor("x", x, ndim=4, layout="(N*T, C, H, W)")
    check.positive_int("num_segments", num_segments)
    check.segments_divide("x", x, num_segments)
    nt, channels, h, w = x.shape
    check.tensor_like("shift_weight", shift_weight, "x", x, ndim=3, layout="(C, 1, 3)")
    check.temporal_weight("shift_weight", shift_weight, channels)
    check.tensor_like("weight", weight, "x", x, ndim=2, layout="(C, c)")
    if weight.shape[0] != channels or weight.shape[1] < 1:
        raise ValueError(f"weight must have shape (C, c) with C={channels} (x's channels), "
                         f"got {tuple(weight.shape)}")
    mid = weight.shape[1]
    check.tensor_like("mixed", mixed, "x", x, ndim=5, layout="(2, N*T, c, H, W)")
    if tuple(mixed.shape) != (2, nt, mid, h, w):
        raise ValueError(f"mixed must have shape (2, N*T, c, H, W) = {(2, nt, mid, h, w)} for x "
                         f"{tuple(x.shape)} and weight {tuple(weight.shape)}, "
                         f"got {tuple(mixed.shape)}")
    for name, t in (("scale", scale), ("bias", bias)):
        check.tensor_like(name, t, "x", x, ndim=2, layout="(2, C)")
        if tuple(t.shape) != (2, channels):
            raise ValueError(f"{name} must have shape (2, C) = {(2, channels)}, "
                             f"got {tuple(t.shape)}")


def _fake(x, mixed, weight, scale, bias, shift_weight, num_segments):
    return empty_like_layout(x, x.shape)


def _backward_fake(grad_out, x, mixed, weight, scale, bias, shift_weight, num_segments):
    return (empty_like_layout(x, x.shape), empty_stacked_like_layout(x, mixed.shape),
            weight.new_empty(weight.shape), scale.new_empty(scale.shape),
            bias.new_empty(bias.shape), shift_weight.new_empty(shift_weight.shape))


def _setup_context(ctx, inputs, output):
    *tensors, num_segments = inputs
    ctx.save_for_backward(*tensors)
    ctx.num_segments = num_segments


def _backward(ctx, grad_out):
    grads = native_op(NAME + "_backward")(grad_out, *ctx.saved_tensors, ctx.num_segments)
    return tuple(grads) + (None,)


ProjectExciteShiftFunction = register_operator(
    NAME, fake=_fake, backward_fake=_backward_fake, setup_context=_setup_context,
    backward=_backward)


def project_excite_shift(x: torch.Tensor, mixed: torch.Tensor, weight: torch.Tensor,
                         scale: torch.Tensor, bias: torch.Tensor, shift_weight: torch.Tensor,
                         num_segments: int, *, backend: str | None = "auto") -> torch.Tensor:
    """``temporal_shift_conv(x * (0.5 + 0.5*sigmoid(y_0) + 0.5*sigmoid(y_1)), shift_weight)``
    with ``y_d = scale[d] * (weight @ mixed[d]) + bias[d]``.

    ``x``: (N*T, C, H, W); ``mixed``: (2, N*T, c, H, W), [0] the forward and [1] the backward
    direction; ``weight``: (C, c); ``scale``, ``bias``: (2, C), one affine per direction;
    ``shift_weight``: (C, 1, 3). Returns a tensor of ``x``'s shape and memory format; gradients
    flow to all six tensors.
    """
    return call(NAME, backend, _check, x, mixed, weight, scale, bias, shift_weight, num_segments)
