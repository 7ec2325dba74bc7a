"""Nearest-upsampling operators: multiscale_sum (L-TDM) and lateral_fuse (S-TDM).

``up`` picks source pixels exactly as ``F.interpolate(mode="nearest", size=...)`` does (ATen's
nearest index, csrc/common.h ``nearest_src_index``): the identity for equal sizes, ``dst >> 1``
for doubled sizes, otherwise ``min(floor(dst * (float)in/out), in - 1)`` in float32.

The backward of ``up`` is a gather: each source pixel sums the upstream gradient over the
output pixels that read it. Those form a run along each axis; the kernel scans a short window
per axis whose position and length are computed on the host from the exact index map
(:func:`_axis_plan`), and keeps the output pixels whose source is this pixel. Deterministic,
no atomics.
"""

import functools
import math
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .._layout import as_4d, empty_like_layout
from ._common import (ELEMENTWISE_CONFIGS, block_offsets, elementwise_configs, fp32, grid_1d,
                      is_channels_last, is_f64, needs_int64, unravel_nchw)
from ._wiring import define_operator

__all__ = ["multiscale_sum", "lateral_fuse"]

_CONFIGS = elementwise_configs(*ELEMENTWISE_CONFIGS)

# How one axis maps output to source indices (constexpr MODE of the kernels).
_SAME, _DOUBLE, _SCALED = 0, 1, 2


class _AxisPlan(NamedTuple):
    mode: int     # _SAME, _DOUBLE or _SCALED
    scale: float  # float32 in/out (the forward's scale)
    inv: float    # float32 out/in (the backward's window estimate)
    lead: int     # the window starts `lead` before the estimate floor(src * inv)
    window: int   # and holds `window` output indices


def _nearest_src(dst: int, in_size: int, out_size: int, scale: float) -> int:
    if out_size == in_size:
        return dst
    if out_size == 2 * in_size:
        return dst >> 1
    # float(dst) * scale is exact in double (24 + 24 bits); fp32() rounds it like a float32 mul.
    return min(math.floor(fp32(float(dst) * scale)), in_size - 1)


@functools.lru_cache(maxsize=256)
def _axis_plan(in_size: int, out_size: int) -> _AxisPlan:
    if out_size == in_size:
        return _AxisPlan(_SAME, 1.0, 1.0, 0, 1)
    if out_size == 2 * in_size:
        return _AxisPlan(_DOUBLE, 0.5, 2.0, 0, 2)
    scale, inv = fp32(in_size / out_size), fp32(out_size / in_size)
    # Emulate the kernel: for every source index, where its run of output indices lies relative
    # to the estimate; the window must cover every run.
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for dst in range(out_size):
        src = _nearest_src(dst, in_size, out_size, scale)
        first.setdefault(src, dst)
        last[src] = dst
    lead = after = 0
    for src, begin in first.items():
        estimate = math.floor(fp32(float(src) * inv))
        lead = max(lead, estimate - begin)
        after = max(after, last[src] - estimate)
    return _AxisPlan(_SCALED, scale, inv, lead, lead + after + 1)


@triton.jit
def _nearest_source(dst, in_size, scale, MODE: tl.constexpr):
    """The source index F.interpolate(mode="nearest") reads for output index ``dst``."""
    if MODE == 0:
        src = dst
    elif MODE == 1:
        src = dst // 2
    else:
        # dst >= 0 wherever the result is used, so truncation is floor.
        src = tl.minimum((dst.to(tl.float32) * scale).to(dst.dtype), in_size - 1)
    return src


@triton.jit
def _window_start(src, inv, LEAD: tl.constexpr, MODE: tl.constexpr):
    if MODE == 0:
        start = src
    elif MODE == 1:
        start = src * 2
    else:
        start = (src.to(tl.float32) * inv).to(src.dtype) - LEAD
    return start


# ---------------------------------------------------------------------------------- kernels

@triton.autotune(configs=_CONFIGS, key=["n_out", "MODE_H", "MODE_W"])
@triton.jit
def _upsample_add_kernel(
    x_ptr, small_ptr, extra_ptr, out_ptr, n_out, C, H, W, h_in, w_in, scale_h, scale_w,
    x_weight, small_weight, extra_weight,
    sx_n, sx_c, sx_h, sx_w, ss_n, ss_c, ss_h, ss_w, se_n, se_c, se_h, se_w,
    MODE_H: tl.constexpr, MODE_W: tl.constexpr, HAS_EXTRA: tl.constexpr,
    CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr,
):
    ACC = tl.float64 if F64 else tl.float32
    # out = x_weight*x + small_weight*up(small) (+ extra_weight*extra), left to right.
    offs = block_offsets(BLOCK, INT64)
    mask = offs < n_out
    n, c, h, w = unravel_nchw(offs, C, H, W, CHANNELS_LAST)
    src_h = _nearest_source(h, h_in, scale_h, MODE_H)
    src_w = _nearest_source(w, w_in, scale_w, MODE_W)
    x = tl.load(x_ptr + n * sx_n + c * sx_c + h * sx_h + w * sx_w, mask=mask, other=0.0).to(ACC)
    s = tl.load(small_ptr + n * ss_n + c * ss_c + src_h * ss_h + src_w * ss_w,
                mask=mask, other=0.0).to(ACC)
    out = x_weight * x + small_weight * s
    if HAS_EXTRA:
        e = tl.load(extra_ptr + n * se_n + c * se_c + h * se_h + w * se_w, mask=mask,
                    other=0.0).to(ACC)
        out = out + extra_weight * e
    tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.autotune(configs=_CONFIGS, key=["n_elem"])
@triton.jit
def _scale_kernel(
    g_ptr, out_ptr, n_elem, C, H, W, factor, sg_n, sg_c, sg_h, sg_w,
    CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr,
):
    ACC = tl.float64 if F64 else tl.float32
    # out = factor * g, out dense in its layout, g through strides (expanded gradients work).
    offs = block_offsets(BLOCK, INT64)
    mask = offs < n_elem
    n, c, h, w = unravel_nchw(offs, C, H, W, CHANNELS_LAST)
    g = tl.load(g_ptr + n * sg_n + c * sg_c + h * sg_h + w * sg_w, mask=mask, other=0.0).to(ACC)
    tl.store(out_ptr + offs, (factor * g).to(out_ptr.dtype.element_ty), mask=mask)


@triton.autotune(configs=_CONFIGS, key=["n_small", "MODE_H", "MODE_W", "WIN_H", "WIN_W"])
@triton.jit
def _upsample_grad_kernel(
    g_ptr, out_ptr, n_small, C, h_in, w_in, H, W, scale_h, scale_w, inv_h, inv_w, factor,
    sg_n, sg_c, sg_h, sg_w,
    MODE_H: tl.constexpr, MODE_W: tl.constexpr, LEAD_H: tl.constexpr, LEAD_W: tl.constexpr,
    WIN_H: tl.constexpr, WIN_W: tl.constexpr,
    CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr,
):
    ACC = tl.float64 if F64 else tl.float32
    # out[n, c, sh, sw] = factor * sum of g[n, c, h, w] over output pixels reading (sh, sw).
    offs = block_offsets(BLOCK, INT64)
    mask = offs < n_small
    n, c, sh, sw = unravel_nchw(offs, C, h_in, w_in, CHANNELS_LAST)
    start_h = _window_start(sh, inv_h, LEAD_H, MODE_H)
    start_w = _window_start(sw, inv_w, LEAD_W, MODE_W)
    base = n * sg_n + c * sg_c
    acc = tl.zeros([BLOCK], dtype=ACC)
    for i in tl.static_range(WIN_H):
        h = start_h + i
        row_ok = mask & (h >= 0) & (h < H) & (_nearest_source(h, h_in, scale_h, MODE_H) == sh)
        for j in tl.static_range(WIN_W):
            w = start_w + j
            ok = row_ok & (w >= 0) & (w < W) & (_nearest_source(w, w_in, scale_w, MODE_W) == sw)
            acc += tl.load(g_ptr + base + h * sg_h + w * sg_w, mask=ok, other=0.0).to(ACC)
    tl.store(out_ptr + offs, (factor * acc).to(out_ptr.dtype.element_ty), mask=mask)


# -------------------------------------------------------------------------------- launchers

def _launch_upsample_add(x, small, extra, out, x_weight, small_weight, extra_weight):
    """out = x_weight*x + small_weight*up(small, like=x) [+ extra_weight*extra]; 4-D tensors."""
    n_out = out.numel()
    if not n_out:
        return
    _, c, h, w = out.shape
    # int(): the plans are cached per size (a SymInt under dynamic shapes is specialised).
    plan_h, plan_w = _axis_plan(int(small.shape[2]), int(h)), _axis_plan(int(small.shape[3]),
                                                                          int(w))
    has_extra = extra is not None
    extra = x if extra is None else extra
    torch.library.wrap_triton(_upsample_add_kernel)[grid_1d(n_out)](
        x, small, extra, out, n_out, c, h, w, small.shape[2], small.shape[3],
        plan_h.scale, plan_w.scale, x_weight, small_weight, extra_weight,
        *x.stride(), *small.stride(), *extra.stride(),
        MODE_H=plan_h.mode, MODE_W=plan_w.mode, HAS_EXTRA=has_extra,
        CHANNELS_LAST=is_channels_last(out), INT64=needs_int64(x, small, extra, out),
        F64=is_f64(out))


def _launch_scale(g, out, factor):
    n_elem = out.numel()
    if n_elem:
        torch.library.wrap_triton(_scale_kernel)[grid_1d(n_elem)](
            g, out, n_elem, *out.shape[1:], factor, *g.stride(),
            CHANNELS_LAST=is_channels_last(out), INT64=needs_int64(g, out), F64=is_f64(g))


def _launch_upsample_grad(g, out, factor):
    """out (the small tensor's gradient) = factor * transpose of up, applied to g."""
    n_small = out.numel()
    if not n_small:
        return
    _, c, h_in, w_in = out.shape
    h, w = g.shape[2], g.shape[3]
    plan_h, plan_w = _axis_plan(int(h_in), int(h)), _axis_plan(int(w_in), int(w))
    torch.library.wrap_triton(_upsample_grad_kernel)[grid_1d(n_small)](
        g, out, n_small, c, h_in, w_in, h, w, plan_h.scale, plan_w.scale, plan_h.inv,
        plan_w.inv, factor, *g.stride(),
        MODE_H=plan_h.mode, MODE_W=plan_w.mode, LEAD_H=plan_h.lead, LEAD_W=plan_w.lead,
        WIN_H=plan_h.window, WIN_W=plan_w.window,
        CHANNELS_LAST=is_channels_last(out), INT64=needs_int64(g, out), F64=is_f64(g))


# ---------------------------------------------------------------------------- multiscale_sum

_THIRD = 1.0 / 3.0


def _multiscale_forward(diff: torch.Tensor, pooled_branch: torch.Tensor,
                        full_branch: torch.Tensor) -> torch.Tensor:
    # Any leading dims: the kernels see (B, c, H, W) views (copies only where no view exists).
    diff4, pooled4, full4 = as_4d(diff), as_4d(pooled_branch), as_4d(full_branch)
    out4 = empty_like_layout(diff4, diff4.shape)
    # The authors' order: 1/3*diff + 1/3*up + 1/3*full.
    _launch_upsample_add(diff4, pooled4, full4, out4, _THIRD, _THIRD, _THIRD)
    return out4.view(diff.shape)


def _multiscale_backward(grad_out: torch.Tensor, pooled_height: int,
                         pooled_width: int) -> tuple[torch.Tensor, torch.Tensor]:
    g4 = as_4d(grad_out)
    grad_third = empty_like_layout(g4, g4.shape)
    grad_pooled = empty_like_layout(g4, g4.shape[:2] + (pooled_height, pooled_width))
    _launch_scale(g4, grad_third, _THIRD)
    _launch_upsample_grad(g4, grad_pooled, _THIRD)
    return (grad_third.view(grad_out.shape),
            grad_pooled.view(grad_out.shape[:-2] + (pooled_height, pooled_width)))


def _multiscale_setup_context(ctx, inputs, output):
    ctx.pooled_size = tuple(inputs[1].shape[-2:])


def _multiscale_input_grads(ctx, run_backward, grad_out):
    grad_third, grad_pooled = run_backward(grad_out, *ctx.pooled_size)
    # diff and full_branch both enter the sum with weight 1/3: one gradient serves both.
    return grad_third, grad_pooled, grad_third


multiscale_sum = define_operator(
    "multiscale_sum", forward=_multiscale_forward, backward=_multiscale_backward,
    setup_context=_multiscale_setup_context, input_grads=_multiscale_input_grads,
    doc="Triton multiscale_sum(diff, pooled_branch, full_branch); see tdn_ops.multiscale_sum.")


# ------------------------------------------------------------------------------ lateral_fuse

def _lateral_forward(x: torch.Tensor, d: torch.Tensor, alpha: float,
                     beta: float) -> torch.Tensor:
    out = empty_like_layout(x, x.shape)
    _launch_upsample_add(x, d, None, out, alpha, beta, 0.0)
    return out


def _lateral_backward(grad_out: torch.Tensor, d_height: int, d_width: int, alpha: float,
                      beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    grad_x = empty_like_layout(grad_out, grad_out.shape)
    grad_d = empty_like_layout(grad_out, grad_out.shape[:2] + (d_height, d_width))
    _launch_scale(grad_out, grad_x, alpha)
    _launch_upsample_grad(grad_out, grad_d, beta)
    return grad_x, grad_d


def _lateral_setup_context(ctx, inputs, output):
    _, d, ctx.alpha, ctx.beta = inputs
    ctx.d_size = tuple(d.shape[-2:])


def _lateral_input_grads(ctx, run_backward, grad_out):
    grad_x, grad_d = run_backward(grad_out, *ctx.d_size, ctx.alpha, ctx.beta)
    return grad_x, grad_d, None, None


lateral_fuse = define_operator(
    "lateral_fuse", forward=_lateral_forward, backward=_lateral_backward,
    setup_context=_lateral_setup_context, input_grads=_lateral_input_grads,
    doc="Triton lateral_fuse(x, d, alpha, beta); see tdn_ops.lateral_fuse.")
