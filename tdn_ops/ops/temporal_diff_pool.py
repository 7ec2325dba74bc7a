"""temporal_diff_pool: S-TDM step 1, frame differences and average pooling in one pass.

``x`` (B, frames*c, H, W) holds ``frames`` frames of ``c`` channels each; block ``i`` of the
output is ``avgpool_k(x_{i+1} - x_i)`` (floor mode: an odd last row or column is dropped).
"""

from __future__ import annotations

import torch

from .. import _checks as check
from .._dispatch import call, native_op
from .._layout import empty_like_layout
from .._registry import register_operator

NAME = "temporal_diff_pool"


def _check(x, frames, kernel_size) -> None:
    check.tensor("x", x, ndim=4, layout="(B, frames*c, H, W)")
    check.positive_int("frames", frames, minimum=2)
    check.positive_int("kernel_size", kernel_size)
    if x.shape[1] % frames != 0:
        raise ValueError(f"x has {x.shape[1]} channels, not divisible by frames={frames}; "
                         f"expected (B, frames*c, H, W), got shape {tuple(x.shape)}")
    check.spatial_at_least("x", x, kernel_size, "pooling kernel")


def _out_shape(x, frames, kernel_size):
    b, ch, h, w = x.shape
    return (b, ch // frames * (frames - 1), h // kernel_size, w // kernel_size)


def _fake(x, frames, kernel_size):
    return empty_like_layout(x, _out_shape(x, frames, kernel_size))


def _backward_fake(grad_out, frames, kernel_size, height, width):
    b, ch, _, _ = grad_out.shape
    return empty_like_layout(grad_out, (b, ch // (frames - 1) * frames, height, width))


def _setup_context(ctx, inputs, output):
    x, frames, kernel_size = inputs
    ctx.frames, ctx.kernel_size = frames, kernel_size
    ctx.height, ctx.width = x.shape[-2], x.shape[-1]


def _backward(ctx, grad_out):
    grad_x = native_op(NAME + "_backward")(grad_out, ctx.frames, ctx.kernel_size,
                                           ctx.height, ctx.width)
    return grad_x, None, None


TemporalDiffPoolFunction = register_operator(
    NAME, fake=_fake, backward_fake=_backward_fake, setup_context=_setup_context,
    backward=_backward)


def temporal_diff_pool(x: torch.Tensor, frames: int = 5, kernel_size: int = 2, *,
                       backend: str | None = "auto") -> torch.Tensor:
    """Differences of consecutive frames, average-pooled by ``kernel_size`` (stride = kernel).

    ``x``: (B, frames*c, H, W) → (B, (frames-1)*c, H//k, W//k). For TDN's S-TDM, ``x`` is the
    (N*T, 15, H, W) snippet stack and the result the (N*T, 12, H/2, W/2) motion input.
    """
    return call(NAME, backend, _check, x, frames, kernel_size)
