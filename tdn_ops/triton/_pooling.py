"""Difference-and-pool operators: temporal_diff_pool (S-TDM) and cross_segment_diff (L-TDM).

Kernels index their inputs through strides (any layout, including expanded gradients, without
a copy) and write outputs in the layout of the primary input (tdn_ops/_layout.py). The
backward kernels gather: each input-gradient element reads the few output-gradient elements it
contributed to, so no two programs write one address and the result is deterministic.
"""

import torch
import triton
import triton.language as tl

from .._layout import empty_like_layout, empty_stacked_like_layout
from ._common import (ELEMENTWISE_CONFIGS, WIDE_CONFIGS, block_offsets, elementwise_configs,
                      grid_1d, is_channels_last, is_f64, needs_int64, unravel_nchw)
from ._wiring import define_operator

__all__ = ["temporal_diff_pool", "cross_segment_diff"]

_CONFIGS = elementwise_configs(*ELEMENTWISE_CONFIGS)
_WIDE_CONFIGS = elementwise_configs(*WIDE_CONFIGS)


# ------------------------------------------------------------------------ temporal_diff_pool

@triton.autotune(configs=_WIDE_CONFIGS, key=["n_out", "K"])
@triton.jit
def _diff_pool_fwd_kernel(
    x_ptr, out_ptr, n_out, C_OUT, H_OUT, W_OUT, frame_channels,
    sx_n, sx_c, sx_h, sx_w,
    K: tl.constexpr, CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr, F64: tl.constexpr,
    BLOCK: tl.constexpr,
):
    ACC = tl.float64 if F64 else tl.float32
    # out[n, i*c + j] = avgpool_K(x[n, (i+1)*c + j] - x[n, i*c + j]): the "current" frame's
    # channel equals the output channel, the next frame's is c further.
    offs = block_offsets(BLOCK, INT64)
    mask = offs < n_out
    n, ch, ho, wo = unravel_nchw(offs, C_OUT, H_OUT, W_OUT, CHANNELS_LAST)
    cur_base = n * sx_n + ch * sx_c
    next_base = n * sx_n + (ch + frame_channels) * sx_c
    acc = tl.zeros([BLOCK], dtype=ACC)
    for dy in tl.static_range(K):
        h = ho * K + dy
        for dx in tl.static_range(K):
            w = wo * K + dx
            pix = h * sx_h + w * sx_w
            cur = tl.load(x_ptr + cur_base + pix, mask=mask, other=0.0).to(ACC)
            nxt = tl.load(x_ptr + next_base + pix, mask=mask, other=0.0).to(ACC)
            acc += nxt - cur
    out = acc / (K * K)
    tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.autotune(configs=_CONFIGS, key=["n_in", "K"])
@triton.jit
def _diff_pool_bwd_kernel(
    g_ptr, gx_ptr, n_in, C_IN, H, W, C_OUT, H_OUT, W_OUT, frame_channels,
    sg_n, sg_c, sg_h, sg_w,
    K: tl.constexpr, CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr, F64: tl.constexpr,
    BLOCK: tl.constexpr,
):
    ACC = tl.float64 if F64 else tl.float32
    # Frame j enters difference j-1 with + and difference j with -:
    # grad_x[ch] = G[ch - c] - G[ch], G = grad_out[.., h//K, w//K] / K^2, zero outside the
    # pooled area and for differences that do not exist (first/last frame).
    offs = block_offsets(BLOCK, INT64)
    mask = offs < n_in
    n, ch, h, w = unravel_nchw(offs, C_IN, H, W, CHANNELS_LAST)
    ho = h // K
    wo = w // K
    inside = mask & (ho < H_OUT) & (wo < W_OUT)
    has_prev = inside & (ch >= frame_channels)
    has_next = inside & (ch < C_OUT)
    pix = n * sg_n + ho * sg_h + wo * sg_w
    g_prev = tl.load(g_ptr + pix + (ch - frame_channels) * sg_c, mask=has_prev,
                     other=0.0).to(ACC)
    g_next = tl.load(g_ptr + pix + ch * sg_c, mask=has_next, other=0.0).to(ACC)
    grad = g_prev / (K * K) - g_next / (K * K)
    tl.store(gx_ptr + offs, grad.to(gx_ptr.dtype.element_ty), mask=mask)


def _diff_pool_forward(x: torch.Tensor, frames: int, kernel_size: int) -> torch.Tensor:
    b, ch, h, w = x.shape
    c = ch // frames
    out = empty_like_layout(x, (b, c * (frames - 1), h // kernel_size, w // kernel_size))
    n_out = out.numel()
    if n_out:
        torch.library.wrap_triton(_diff_pool_fwd_kernel)[grid_1d(n_out)](
            x, out, n_out, out.shape[1], out.shape[2], out.shape[3], c, *x.stride(),
            K=kernel_size, CHANNELS_LAST=is_channels_last(x), INT64=needs_int64(x, out),
            F64=is_f64(x))
    return out


def _diff_pool_backward(grad_out: torch.Tensor, frames: int, kernel_size: int, height: int,
                        width: int) -> torch.Tensor:
    b, c_out, h_out, w_out = grad_out.shape
    c = c_out // (frames - 1)
    grad_x = empty_like_layout(grad_out, (b, c * frames, height, width))
    n_in = grad_x.numel()
    if n_in:
        torch.library.wrap_triton(_diff_pool_bwd_kernel)[grid_1d(n_in)](
            grad_out, grad_x, n_in, c * frames, height, width, c_out, h_out, w_out, c,
            *grad_out.stride(),
            K=kernel_size, CHANNELS_LAST=is_channels_last(grad_out),
            INT64=needs_int64(grad_out, grad_x), F64=is_f64(grad_out))
    return grad_x


def _diff_pool_setup_context(ctx, inputs, output):
    x, ctx.frames, ctx.kernel_size = inputs
    ctx.height, ctx.width = x.shape[-2], x.shape[-1]


def _diff_pool_input_grads(ctx, run_backward, grad_out):
    grad_x = run_backward(grad_out, ctx.frames, ctx.kernel_size, ctx.height, ctx.width)
    return grad_x, None, None


temporal_diff_pool = define_operator(
    "temporal_diff_pool", forward=_diff_pool_forward, backward=_diff_pool_backward,
    setup_context=_diff_pool_setup_context, input_grads=_diff_pool_input_grads,
    doc="Triton temporal_diff_pool(x, frames, kernel_size); see tdn_ops.temporal_diff_pool.")


# ------------------------------------------------------------------------ cross_segment_diff

@triton.autotune(configs=_WIDE_CONFIGS, key=["n_cells"])
@triton.jit
def _cross_diff_fwd_kernel(
    feat_ptr, aligned_ptr, diff_ptr, pooled_ptr, n_cells, C, H, W, H_CELLS, W_CELLS,
    H_OUT, W_OUT, T,
    sf_n, sf_c, sf_h, sf_w, sa_n, sa_c, sa_h, sa_w,
    sd_dir, sd_n, sd_c, sd_h, sd_w, sp_dir, sp_n, sp_c, sp_h, sp_w,
    CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr,
):
    ACC = tl.float64 if F64 else tl.float32
    # One lane per 2x2 cell (ceil(H/2) x ceil(W/2) of them, so an odd last row/column is
    # covered): it writes the cell's (up to) 4 pixels of both differences and, for whole cells,
    # their averages. Inputs are read once.
    offs = block_offsets(BLOCK, INT64)
    mask = offs < n_cells
    n, c, hc, wc = unravel_nchw(offs, C, H_CELLS, W_CELLS, CHANNELS_LAST)
    t = n % T
    has_next = mask & (t < T - 1)  # fwd[t] = aligned[t+1] - feat[t]; zero for the last segment
    has_prev = mask & (t >= 1)     # bwd[t] = aligned[t-1] - feat[t]; zero for the first
    sum_fwd = tl.zeros([BLOCK], dtype=ACC)
    sum_bwd = tl.zeros([BLOCK], dtype=ACC)
    for dy in tl.static_range(2):
        h = hc * 2 + dy
        for dx in tl.static_range(2):
            w = wc * 2 + dx
            valid = mask & (h < H) & (w < W)
            f = tl.load(feat_ptr + n * sf_n + c * sf_c + h * sf_h + w * sf_w,
                        mask=valid, other=0.0).to(ACC)
            a_pix = aligned_ptr + c * sa_c + h * sa_h + w * sa_w
            a_next = tl.load(a_pix + (n + 1) * sa_n, mask=valid & has_next, other=0.0).to(ACC)
            a_prev = tl.load(a_pix + (n - 1) * sa_n, mask=valid & has_prev, other=0.0).to(ACC)
            fwd = tl.where(has_next, a_next - f, 0.0)
            bwd = tl.where(has_prev, a_prev - f, 0.0)
            d_out = diff_ptr + n * sd_n + c * sd_c + h * sd_h + w * sd_w
            tl.store(d_out, fwd.to(diff_ptr.dtype.element_ty), mask=valid)
            tl.store(d_out + sd_dir, bwd.to(diff_ptr.dtype.element_ty), mask=valid)
            sum_fwd += fwd
            sum_bwd += bwd
    whole = mask & (hc < H_OUT) & (wc < W_OUT)
    p_out = pooled_ptr + n * sp_n + c * sp_c + hc * sp_h + wc * sp_w
    tl.store(p_out, (sum_fwd * 0.25).to(pooled_ptr.dtype.element_ty), mask=whole)
    tl.store(p_out + sp_dir, (sum_bwd * 0.25).to(pooled_ptr.dtype.element_ty), mask=whole)


@triton.jit
def _direction_grad(gd_ptr, gp_ptr, n, c, h, w, ho, wo, mask, inside,
                    sd_n, sd_c, sd_h, sd_w, sp_n, sp_c, sp_h, sp_w, F64: tl.constexpr):
    """G = grad_diff + grad_pooled/4 (the pooled part only inside the pooled area), zero where
    ``mask`` is off."""
    ACC = tl.float64 if F64 else tl.float32
    gd = tl.load(gd_ptr + n * sd_n + c * sd_c + h * sd_h + w * sd_w, mask=mask,
                 other=0.0).to(ACC)
    gp = tl.load(gp_ptr + n * sp_n + c * sp_c + ho * sp_h + wo * sp_w,
                 mask=mask & inside, other=0.0).to(ACC)
    return gd + gp * 0.25


@triton.autotune(configs=_WIDE_CONFIGS, key=["n_elem"])
@triton.jit
def _cross_diff_bwd_kernel(
    gd_ptr, gp_ptr, g_feat_ptr, g_aligned_ptr, n_elem, C, H, W, H_OUT, W_OUT, T,
    sd_dir, sd_n, sd_c, sd_h, sd_w, sp_dir, sp_n, sp_c, sp_h, sp_w,
    CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr,
):
    # grad_feat[t]    = -Gf[t] (t < T-1) - Gb[t] (t >= 1)
    # grad_aligned[t] =  Gf[t-1] (t >= 1) + Gb[t+1] (t < T-1)
    offs = block_offsets(BLOCK, INT64)
    mask = offs < n_elem
    n, c, h, w = unravel_nchw(offs, C, H, W, CHANNELS_LAST)
    t = n % T
    ho = h // 2
    wo = w // 2
    inside = (ho < H_OUT) & (wo < W_OUT)
    has_next = mask & (t < T - 1)
    has_prev = mask & (t >= 1)
    gb_ptr = gd_ptr + sd_dir
    gpb_ptr = gp_ptr + sp_dir
    gf_here = _direction_grad(gd_ptr, gp_ptr, n, c, h, w, ho, wo, has_next, inside,
                              sd_n, sd_c, sd_h, sd_w, sp_n, sp_c, sp_h, sp_w, F64)
    gb_here = _direction_grad(gb_ptr, gpb_ptr, n, c, h, w, ho, wo, has_prev, inside,
                              sd_n, sd_c, sd_h, sd_w, sp_n, sp_c, sp_h, sp_w, F64)
    gf_prev = _direction_grad(gd_ptr, gp_ptr, n - 1, c, h, w, ho, wo, has_prev, inside,
                              sd_n, sd_c, sd_h, sd_w, sp_n, sp_c, sp_h, sp_w, F64)
    gb_next = _direction_grad(gb_ptr, gpb_ptr, n + 1, c, h, w, ho, wo, has_next, inside,
                              sd_n, sd_c, sd_h, sd_w, sp_n, sp_c, sp_h, sp_w, F64)
    g_feat = -(gf_here + gb_here)
    g_aligned = gf_prev + gb_next
    tl.store(g_feat_ptr + offs, g_feat.to(g_feat_ptr.dtype.element_ty), mask=mask)
    tl.store(g_aligned_ptr + offs, g_aligned.to(g_aligned_ptr.dtype.element_ty), mask=mask)


def _cross_diff_forward(feat: torch.Tensor, aligned: torch.Tensor,
                        num_segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    b, c, h, w = feat.shape
    diff = empty_stacked_like_layout(feat, (2, b, c, h, w))
    pooled = empty_stacked_like_layout(feat, (2, b, c, h // 2, w // 2))
    h_cells, w_cells = (h + 1) // 2, (w + 1) // 2
    n_cells = b * c * h_cells * w_cells
    if n_cells:
        torch.library.wrap_triton(_cross_diff_fwd_kernel)[grid_1d(n_cells)](
            feat, aligned, diff, pooled, n_cells, c, h, w, h_cells, w_cells, h // 2, w // 2,
            num_segments, *feat.stride(), *aligned.stride(), *diff.stride(), *pooled.stride(),
            CHANNELS_LAST=is_channels_last(feat),
            INT64=needs_int64(feat, aligned, diff, pooled), F64=is_f64(feat))
    return diff, pooled


def _cross_diff_backward(grad_diff: torch.Tensor, grad_pooled: torch.Tensor,
                         num_segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    ref = grad_diff[0]  # both gradients take the layout of one direction's gradient
    _, b, c, h, w = grad_diff.shape
    grad_feat = empty_like_layout(ref, ref.shape)
    grad_aligned = empty_like_layout(ref, ref.shape)
    n_elem = grad_feat.numel()
    if n_elem:
        torch.library.wrap_triton(_cross_diff_bwd_kernel)[grid_1d(n_elem)](
            grad_diff, grad_pooled, grad_feat, grad_aligned, n_elem, c, h, w,
            grad_pooled.shape[-2], grad_pooled.shape[-1], num_segments,
            *grad_diff.stride(), *grad_pooled.stride(),
            CHANNELS_LAST=is_channels_last(ref),
            INT64=needs_int64(grad_diff, grad_pooled, grad_feat), F64=is_f64(grad_diff))
    return grad_feat, grad_aligned


def _cross_diff_setup_context(ctx, inputs, output):
    feat, _, ctx.num_segments = inputs
    ctx.shape = tuple(feat.shape)


def _cross_diff_input_grads(ctx, run_backward, grad_diff, grad_pooled):
    # An unused output may arrive as None where gradients are not materialised.
    if grad_diff is None or grad_pooled is None:
        ref = grad_pooled if grad_diff is None else grad_diff
        b, c, h, w = ctx.shape
        if grad_diff is None:
            grad_diff = ref.new_zeros((2, b, c, h, w))
        if grad_pooled is None:
            grad_pooled = ref.new_zeros((2, b, c, h // 2, w // 2))
    grad_feat, grad_aligned = run_backward(grad_diff, grad_pooled, ctx.num_segments)
    return grad_feat, grad_aligned, None


cross_segment_diff = define_operator(
    "cross_segment_diff", forward=_cross_diff_forward, backward=_cross_diff_backward,
    setup_context=_cross_diff_setup_context, input_grads=_cross_diff_input_grads,
    doc="Triton cross_segment_diff(feat, aligned, num_segments); see "
        "tdn_ops.cross_segment_diff.")
