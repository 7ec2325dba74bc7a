"""ltdm_mixture: the L-TDM's multiscale mixture of both directions in one operator, for
inference (docs/math.md §4, §6).

From ``feat = bn1(conv1(x))`` (N*T, c, H, W) it computes what ``LongTermTDM.mixture`` does with
six operators: ``aligned = conv2(feat)`` (depthwise 3x3), the forward and backward
differences of :func:`~tdn_ops.cross_segment_diff`, and per direction
``(diff + up(conv3x3(pool2(diff))) + conv3x3(diff)) / 3`` with the two small-scale batch norms
folded into the 3x3 weights and biases. Every intermediate is on c = C/16 channels, so the
six-operator path costs mostly per-call overhead; the kernel keeps them in per-task buffers.

No backward: the operator refuses inputs that require a gradient while grad mode is on, and
``LongTermTDM`` uses it only where none is wanted (eval mode, no autograd, CPU float32/64).
"""

from __future__ import annotations

import torch

from .. import _checks as check
from .._dispatch import call
from .._extension import NATIVE_AVAILABLE
from .._layout import empty_stacked_like_layout

NAME = "ltdm_mixture"

_DTYPES = (torch.float32, torch.float64)


def _check(feat, align_weight, align_bias, pooled_weight, pooled_bias, full_weight, full_bias,
           num_segments) -> None:
    check.tensor("feat", feat, ndim=4, layout="(N*T, c, H, W)")
    if feat.dtype not in _DTYPES:
        raise TypeError(f"feat must be float32 or float64 (ltdm_mixture is an inference "
                        f"operator), got {feat.dtype}")
    check.positive_int("num_segments", num_segments)
    check.segments_divide("feat", feat, num_segments)
    check.spatial_at_least("feat", feat, 2, "2x2 pooling window")
    c = feat.shape[1]
    named = [("align_weight", align_weight, (c, 1, 3, 3)), ("pooled_weight", pooled_weight,
             (c, c, 3, 3)), ("pooled_bias", pooled_bias, (c,)),
             ("full_weight", full_weight, (c, c, 3, 3)), ("full_bias", full_bias, (c,))]
    if align_bias is not None:
        named.append(("align_bias", align_bias, (c,)))
    for name, t, shape in named:
        check.tensor_like(name, t, "feat", feat)
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} for c={c} channels, got "
                             f"{tuple(t.shape)}")
    if torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for _, t, _ in named + [("feat", feat, None)]):
        raise RuntimeError(
            "ltdm_mixture has no backward (it is an inference operator): call it under "
            "torch.no_grad() or torch.inference_mode(), or use LongTermTDM.mixture, which "
            "takes the differentiable operators when a gradient is wanted")


def _fake(feat, align_weight, align_bias, pooled_weight, pooled_bias, full_weight, full_bias,
          num_segments):
    return empty_stacked_like_layout(feat, (2,) + tuple(feat.shape))


if NATIVE_AVAILABLE:
    torch.library.register_fake(f"tdn_ops::{NAME}")(_fake)


def ltdm_mixture(feat: torch.Tensor, align_weight: torch.Tensor,
                 align_bias: torch.Tensor | None, pooled_weight: torch.Tensor,
                 pooled_bias: torch.Tensor, full_weight: torch.Tensor, full_bias: torch.Tensor,
                 num_segments: int, *, backend: str | None = "auto") -> torch.Tensor:
    """The multiscale mixture ``m`` of both L-TDM directions, (2, N*T, c, H, W) in ``feat``'s
    layout ([0] forward, [1] backward), without gradients.

    ``align_weight`` (c, 1, 3, 3) and ``align_bias`` (c,) or None: ``conv2``. ``pooled_*`` and
    ``full_*``: ``conv3_smallscale2`` / ``conv3_smallscale4`` (c, c, 3, 3) with their batch
    norms folded in, biases (c,). Runs the CPU kernel on CPU tensors, the reference elsewhere.
    """
    return call(NAME, backend, _check, feat, align_weight, align_bias, pooled_weight,
                pooled_bias, full_weight, full_bias, num_segments)
