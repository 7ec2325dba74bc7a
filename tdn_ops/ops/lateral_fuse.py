"""lateral_fuse: S-TDM's lateral connection ``alpha*x + beta*up(d, like=x)``
(docs/math.md §2 step 4).

``up`` is ``F.interpolate(d, x.size()[2:], mode="nearest")``, the authors' call.
"""

from __future__ import annotations

import torch

from .. import _checks as check
from .._dispatch import call, native_op
from .._layout import empty_like_layout
from .._registry import register_operator

NAME = "lateral_fuse"


def _check(x, d, alpha: float, beta: float) -> None:
    check.tensor("x", x, ndim=4, layout="(N*T, C, H, W)")
    check.tensor_like("d", d, "x", x, ndim=4, layout="(N*T, C, h, w)")
    if d.shape[:2] != x.shape[:2]:
        raise ValueError(f"d must have x's batch and channels, (N*T, C, h, w) = "
                         f"{tuple(x.shape[:2])} + (h, w), got {tuple(d.shape)}")
    if d.shape[-1] < 1 or d.shape[-2] < 1:
        raise ValueError(f"d has an empty spatial size: {tuple(d.shape)}")


def _fake(x, d, alpha, beta):
    return empty_like_layout(x, x.shape)


def _backward_fake(grad_out, d_height, d_width, alpha, beta):
    return (empty_like_layout(grad_out, grad_out.shape),
            empty_like_layout(grad_out, grad_out.shape[:2] + (d_height, d_width)))


def _setup_context(ctx, inputs, output):
    _, d, ctx.alpha, ctx.beta = inputs
    ctx.d_size = tuple(d.shape[-2:])


def _backward(ctx, grad_out):
    grad_x, grad_d = native_op(NAME + "_backward")(grad_out, *ctx.d_size, ctx.alpha, ctx.beta)
    return grad_x, grad_d, None, None


LateralFuseFunction = register_operator(
    NAME, fake=_fake, backward_fake=_backward_fake, setup_context=_setup_context,
    backward=_backward)


def lateral_fuse(x: torch.Tensor, d: torch.Tensor, alpha: float, beta: float, *,
                 backend: str | None = "auto") -> torch.Tensor:
    """``alpha * x + beta * up(d, like=x)`` with nearest-neighbour upsampling.

    ``x``: (N*T, C, H, W); ``d``: (N*T, C, h, w), any h, w. Gradients flow to ``x`` and ``d``.
    """
    # The coefficients are checked (and made floats) first: the kernels take them as floats.
    alpha, beta = check.real_number("alpha", alpha), check.real_number("beta", beta)
    return call(NAME, backend, _check, x, d, alpha, beta)
