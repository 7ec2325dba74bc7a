"""multiscale_sum: L-TDM's three-scale sum ``(diff + up(pooled_branch) + full_branch) / 3``.

``up`` is nearest-neighbour upsampling to ``diff``'s spatial size, exactly as
``F.interpolate(mode="nearest")`` picks source pixels. Any leading dims: in TDN the inputs are
(2, N*T, c, H, W), both directions at once.
"""

from __future__ import annotations

import torch

from .. import _checks as check
from .._dispatch import call, native_op
from .._layout import as_4d, empty_like_layout
from .._registry import register_operator

NAME = "multiscale_sum"


def _check(diff, pooled_branch, full_branch) -> None:
    check.tensor("diff", diff, min_ndim=3, layout="(..., c, H, W)")
    check.tensor_like("pooled_branch", pooled_branch, "diff", diff)
    check.tensor_like("full_branch", full_branch, "diff", diff, same_shape=True)
    if pooled_branch.shape[:-2] != diff.shape[:-2]:
        raise ValueError(
            f"pooled_branch must match diff in every dim but the last two "
            f"(expected {tuple(diff.shape[:-2])} + (h, w)), got {tuple(pooled_branch.shape)}")
    if pooled_branch.shape[-1] < 1 or pooled_branch.shape[-2] < 1:
        raise ValueError(f"pooled_branch has an empty spatial size: {tuple(pooled_branch.shape)}")


def _fake(diff, pooled_branch, full_branch):
    return empty_like_layout(as_4d(diff), as_4d(diff).shape).view(diff.shape)


def _backward_fake(grad_out, pooled_height, pooled_width):
    g4 = as_4d(grad_out)
    grad_third = empty_like_layout(g4, g4.shape).view(grad_out.shape)
    grad_pooled = empty_like_layout(g4, g4.shape[:2] + (pooled_height, pooled_width))
    return grad_third, grad_pooled.view(grad_out.shape[:-2] + (pooled_height, pooled_width))


def _setup_context(ctx, inputs, output):
    ctx.pooled_size = tuple(inputs[1].shape[-2:])


def _backward(ctx, grad_out):
    grad_third, grad_pooled = native_op(NAME + "_backward")(grad_out, *ctx.pooled_size)
    # diff and full_branch both enter the sum with weight 1/3: one gradient serves both.
    return grad_third, grad_pooled, grad_third


MultiscaleSumFunction = register_operator(
    NAME, fake=_fake, backward_fake=_backward_fake, setup_context=_setup_context,
    backward=_backward)


def multiscale_sum(diff: torch.Tensor, pooled_branch: torch.Tensor, full_branch: torch.Tensor,
                   *, backend: str | None = "auto") -> torch.Tensor:
    """``(diff + up(pooled_branch, like=diff) + full_branch) / 3`` for (..., c, H, W) inputs.

    ``pooled_branch`` is (..., c, h, w) with any h, w; gradients flow to all three inputs.
    """
    return call(NAME, backend, _check, diff, pooled_branch, full_branch)
