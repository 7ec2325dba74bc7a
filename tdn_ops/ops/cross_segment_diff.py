"""cross_segment_diff: L-TDM's forward and backward differences between segments, and their
2x2 average pools, in one pass (docs/math.md §4).

``diff[0][n, t] = aligned[n, t+1] - feat[n, t]`` (zero for the last segment) and
``diff[1][n, t] = aligned[n, t-1] - feat[n, t]`` (zero for the first), with (N*T, ...) viewed
as (N, T, ...); ``pooled = avgpool2(diff)``.
"""

from __future__ import annotations

import torch

from .. import _checks as check
from .._dispatch import call, native_op
from .._layout import empty_like_layout, empty_stacked_like_layout
from .._registry import register_operator

NAME = "cross_segment_diff"


def _check(feat, aligned, num_segments) -> None:
    check.tensor("feat", feat, ndim=4, layout="(N*T, c, H, W)")
    check.tensor_like("aligned", aligned, "feat", feat, same_shape=True)
    check.positive_int("num_segments", num_segments)
    check.segments_divide("feat", feat, num_segments)
    check.spatial_at_least("feat", feat, 2, "2x2 pooling window")


def _fake(feat, aligned, num_segments):
    b, c, h, w = feat.shape
    return (empty_stacked_like_layout(feat, (2, b, c, h, w)),
            empty_stacked_like_layout(feat, (2, b, c, h // 2, w // 2)))


def _backward_fake(grad_diff, grad_pooled, num_segments):
    # The kernels write both gradients in the layout of one direction's gradient.
    ref = grad_diff[0]
    return empty_like_layout(ref, ref.shape), empty_like_layout(ref, ref.shape)


def _setup_context(ctx, inputs, output):
    ctx.num_segments = inputs[2]


def _backward(ctx, grad_diff, grad_pooled):
    grad_feat, grad_aligned = native_op(NAME + "_backward")(grad_diff, grad_pooled,
                                                             ctx.num_segments)
    return grad_feat, grad_aligned, None


CrossSegmentDiffFunction = register_operator(
    NAME, fake=_fake, backward_fake=_backward_fake, setup_context=_setup_context,
    backward=_backward)


def cross_segment_diff(feat: torch.Tensor, aligned: torch.Tensor, num_segments: int, *,
                       backend: str | None = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Bidirectional cross-segment differences of L-TDM, and their 2x2 average pools.

    ``feat`` (the bottleneck ``b``) and ``aligned`` (its depthwise convolution ``cb``):
    (N*T, c, H, W). Returns ``diff`` (2, N*T, c, H, W) and ``pooled`` (2, N*T, c, H//2, W//2),
    index 0 the forward and 1 the backward direction; each half has ``feat``'s memory format,
    so ``diff.flatten(0, 1)`` feeds both directions to one convolution.
    """
    return call(NAME, backend, _check, feat, aligned, num_segments)
