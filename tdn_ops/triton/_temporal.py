"""Temporal operators: bidirectional_excitation, temporal_shift_conv and excite_shift.

Inputs are made dense in the primary input's layout (no copy when they already are), so a
frame's neighbours in the same video sit exactly ``C*H*W`` elements away in both layouts and
the kernels index linearly.

excite_shift never materialises the excited tensor ``e = x*(0.5 + 0.5*σ(y_fwd) + 0.5*σ(y_bwd))``:
the forward recomputes it for the three frames it reads, the backward for the frame it owns.

The weight gradient ``dw[c, k] = Σ_{n,t,h,w} g[t] * e[t-1+k]`` is reduced in two stages with
no atomics: each program of the backward kernel sums a fixed tile range (one frame, a chunk of
pixels, a block of channels) into its own row of a float32 buffer, then a second kernel adds the
rows in a fixed order. The split depends only on the shapes and the tiles are not autotuned, so
``dw`` is bitwise the same on every run.
"""

import torch
import triton
import triton.language as tl

from .._layout import empty_like_layout
from ._common import (ELEMENTWISE_CONFIGS, INTERPRET, WIDE_CONFIGS, block_offsets, cdiv,
                      dense_in_layout_of, elementwise_configs, grid_1d, is_channels_last, is_f64,
                      needs_int64, sigmoid)
from ._wiring import define_operator

__all__ = ["bidirectional_excitation", "temporal_shift_conv", "excite_shift"]

_CONFIGS = elementwise_configs(*ELEMENTWISE_CONFIGS)
_WIDE_CONFIGS = elementwise_configs(*WIDE_CONFIGS)


# ------------------------------------------------------------------------------ excitation

@triton.jit
def _excite(x, y_fwd, y_bwd):
    # The authors' expression, in their order: x + x*(σ(y_fwd)-0.5)*0.5 + x*(σ(y_bwd)-0.5)*0.5.
    return x + x * (sigmoid(y_fwd) - 0.5) * 0.5 + x * (sigmoid(y_bwd) - 0.5) * 0.5


@triton.jit
def _load_excited(x_ptr, yf_ptr, yb_ptr, offs, mask, EXCITE: tl.constexpr, F64: tl.constexpr):
    """e at ``offs`` (zero where ``mask`` is off); plain x when not ``EXCITE``."""
    ACC = tl.float64 if F64 else tl.float32
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
    if EXCITE:
        yf = tl.load(yf_ptr + offs, mask=mask, other=0.0).to(ACC)
        yb = tl.load(yb_ptr + offs, mask=mask, other=0.0).to(ACC)
        x = _excite(x, yf, yb)
    return x


@triton.autotune(configs=_CONFIGS, key=["n_elem"])
@triton.jit
def _excitation_fwd_kernel(x_ptr, yf_ptr, yb_ptr, out_ptr, n_elem,
                           INT64: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr):
    offs = block_offsets(BLOCK, INT64)
    mask = offs < n_elem
    e = _load_excited(x_ptr, yf_ptr, yb_ptr, offs, mask, True, F64)
    tl.store(out_ptr + offs, e.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _excitation_grads(g, x, yf, yb):
    """(dx, dy_fwd, dy_bwd) of e = excite(x, yf, yb) for upstream gradient ``g``
    (docs/math.md §6)."""
    sf = sigmoid(yf)
    sb = sigmoid(yb)
    dx = g * (0.5 + 0.5 * sf + 0.5 * sb)
    dyf = 0.5 * g * x * sf * (1.0 - sf)
    dyb = 0.5 * g * x * sb * (1.0 - sb)
    return dx, dyf, dyb


@triton.autotune(configs=_CONFIGS, key=["n_elem"])
@triton.jit
def _excitation_bwd_kernel(g_ptr, x_ptr, yf_ptr, yb_ptr, dx_ptr, dyf_ptr, dyb_ptr, n_elem,
                           INT64: tl.constexpr, F64: tl.constexpr, BLOCK: tl.constexpr):
    ACC = tl.float64 if F64 else tl.float32
    offs = block_offsets(BLOCK, INT64)
    mask = offs < n_elem
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(ACC)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
    yf = tl.load(yf_ptr + offs, mask=mask, other=0.0).to(ACC)
    yb = tl.load(yb_ptr + offs, mask=mask, other=0.0).to(ACC)
    dx, dyf, dyb = _excitation_grads(g, x, yf, yb)
    tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)
    tl.store(dyf_ptr + offs, dyf.to(dyf_ptr.dtype.element_ty), mask=mask)
    tl.store(dyb_ptr + offs, dyb.to(dyb_ptr.dtype.element_ty), mask=mask)


# --------------------------------------------------------------------------- temporal shift

@triton.autotune(configs=_WIDE_CONFIGS, key=["n_elem", "EXCITE"])
@triton.jit
def _shift_fwd_kernel(x_ptr, yf_ptr, yb_ptr, w_ptr, out_ptr, n_elem, C, HW, CHW, T,
                      EXCITE: tl.constexpr, CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr,
                      F64: tl.constexpr, BLOCK: tl.constexpr):
    ACC = tl.float64 if F64 else tl.float32
    # out[t] = w0*e[t-1] + w1*e[t] + w2*e[t+1], zero outside the video's T frames.
    offs = block_offsets(BLOCK, INT64)
    mask = offs < n_elem
    t = (offs // CHW) % T
    if CHANNELS_LAST:
        c = offs % C
    else:
        c = (offs // HW) % C
    w0 = tl.load(w_ptr + c * 3, mask=mask, other=0.0).to(ACC)
    w1 = tl.load(w_ptr + c * 3 + 1, mask=mask, other=0.0).to(ACC)
    w2 = tl.load(w_ptr + c * 3 + 2, mask=mask, other=0.0).to(ACC)
    e_prev = _load_excited(x_ptr, yf_ptr, yb_ptr, offs - CHW, mask & (t >= 1), EXCITE, F64)
    e_here = _load_excited(x_ptr, yf_ptr, yb_ptr, offs, mask, EXCITE, F64)
    e_next = _load_excited(x_ptr, yf_ptr, yb_ptr, offs + CHW, mask & (t < T - 1), EXCITE, F64)
    out = w0 * e_prev + w1 * e_here + w2 * e_next
    tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _shift_bwd_kernel(
    g_ptr, x_ptr, yf_ptr, yb_ptr, w_ptr, dx_ptr, dyf_ptr, dyb_ptr, partial_ptr,
    C, HW, CHW, T, n_chunks, blocks_per_chunk,
    EXCITE: tl.constexpr, CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr, F64: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    ACC = tl.float64 if F64 else tl.float32
    # Program (r, cb): frame nt = r // n_chunks, pixel chunk r % n_chunks, channel block cb.
    #   grad_e[t] = w0*g[t+1] + w1*g[t] + w2*g[t-1]       -> dx (and dy via excitation)
    #   partial[r, c, k] = Σ over its tiles of g[t+1-k] * e[t]   (= its share of dw[c, k])
    row = tl.program_id(0)
    cb = tl.program_id(1)
    if INT64:
        row = row.to(tl.int64)
    nt = row // n_chunks
    chunk = row % n_chunks
    t = nt % T
    cs = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    if INT64:
        cs = cs.to(tl.int64)
    c_ok = cs < C
    # The frame conditions as block masks (the interpreter rejects scalar masks).
    t_vec = t + tl.zeros([BLOCK_C], dtype=tl.int32)
    prev_ok = (c_ok & (t_vec >= 1))[None, :]
    next_ok = (c_ok & (t_vec < T - 1))[None, :]
    w0 = tl.load(w_ptr + cs * 3, mask=c_ok, other=0.0).to(ACC)[None, :]
    w1 = tl.load(w_ptr + cs * 3 + 1, mask=c_ok, other=0.0).to(ACC)[None, :]
    w2 = tl.load(w_ptr + cs * 3 + 2, mask=c_ok, other=0.0).to(ACC)[None, :]
    acc0 = tl.zeros([BLOCK_P, BLOCK_C], dtype=ACC)
    acc1 = tl.zeros([BLOCK_P, BLOCK_C], dtype=ACC)
    acc2 = tl.zeros([BLOCK_P, BLOCK_C], dtype=ACC)
    plane = nt * CHW
    p_first = chunk * blocks_per_chunk * BLOCK_P
    for i in range(blocks_per_chunk):
        ps = p_first + i * BLOCK_P + tl.arange(0, BLOCK_P)
        p_ok = (ps < HW)[:, None]
        m = p_ok & c_ok[None, :]
        if CHANNELS_LAST:
            off = plane + ps[:, None] * C + cs[None, :]
        else:
            off = plane + ps[:, None] + cs[None, :] * HW
        g_here = tl.load(g_ptr + off, mask=m, other=0.0).to(ACC)
        g_prev = tl.load(g_ptr + off - CHW, mask=p_ok & prev_ok, other=0.0).to(ACC)
        g_next = tl.load(g_ptr + off + CHW, mask=p_ok & next_ok, other=0.0).to(ACC)
        # Outside the video a tap's term is left out, not multiplied by the zero that the
        # masked load gave: the reference never forms those products, and an infinite tap or
        # input would turn 0 into NaN (docs/math.md §6, non-finite values).
        grad_e = (tl.where(next_ok, w0 * g_next, 0.0) + w1 * g_here
                  + tl.where(prev_ok, w2 * g_prev, 0.0))
        x = tl.load(x_ptr + off, mask=m, other=0.0).to(ACC)
        if EXCITE:
            yf = tl.load(yf_ptr + off, mask=m, other=0.0).to(ACC)
            yb = tl.load(yb_ptr + off, mask=m, other=0.0).to(ACC)
            e = _excite(x, yf, yb)
            dx, dyf, dyb = _excitation_grads(grad_e, x, yf, yb)
            tl.store(dyf_ptr + off, dyf.to(dyf_ptr.dtype.element_ty), mask=m)
            tl.store(dyb_ptr + off, dyb.to(dyb_ptr.dtype.element_ty), mask=m)
        else:
            e = x
            dx = grad_e
        tl.store(dx_ptr + off, dx.to(dx_ptr.dtype.element_ty), mask=m)
        acc0 += tl.where(next_ok, g_next * e, 0.0)
        acc1 += g_here * e
        acc2 += tl.where(prev_ok, g_prev * e, 0.0)
    out = partial_ptr + row * (3 * C) + cs * 3
    tl.store(out, tl.sum(acc0, axis=0), mask=c_ok)
    tl.store(out + 1, tl.sum(acc1, axis=0), mask=c_ok)
    tl.store(out + 2, tl.sum(acc2, axis=0), mask=c_ok)


@triton.jit
def _sum_rows_kernel(partial_ptr, out_ptr, n_rows, n_cols, INT64: tl.constexpr,
                     BLOCK_R: tl.constexpr, BLOCK_COLS: tl.constexpr):
    # out[col] = Σ_rows partial[row, col], rows visited in a fixed order.
    cols = tl.program_id(0) * BLOCK_COLS + tl.arange(0, BLOCK_COLS)
    col_ok = cols < n_cols
    acc = tl.zeros([BLOCK_R, BLOCK_COLS], dtype=partial_ptr.dtype.element_ty)
    for r0 in range(0, n_rows, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        if INT64:
            rows = rows.to(tl.int64)
        m = (rows < n_rows)[:, None] & col_ok[None, :]
        acc += tl.load(partial_ptr + rows[:, None] * n_cols + cols[None, :], mask=m, other=0.0)
    tl.store(out_ptr + cols, tl.sum(acc, axis=0).to(out_ptr.dtype.element_ty), mask=col_ok)


# Fixed tiles of the weight-gradient reduction (not autotuned: they fix the summation order).
# The contiguous axis is the long one: pixels in NCHW, channels in NHWC. With 8 warps they
# take 64-80 registers on sm_90 (ptxas -v), no spills.
_TILE_NCHW = (64, 16)          # (BLOCK_P, BLOCK_C)
_TILE_NHWC = (16, 64)
_TILE_WARPS = 8
_TILE_INTERPRET = (64, 32)
_TARGET_PROGRAMS = 1024        # enough to fill a large GPU several times over
_SUM_ROWS_TILE = (32, 64)      # (BLOCK_R, BLOCK_COLS)


def _reduction_plan(nt: int, c: int, hw: int, channels_last: bool):
    """Tiles and the split of each frame's pixels into chunks (a function of shapes only)."""
    if INTERPRET:
        block_p, block_c = _TILE_INTERPRET
        target = 1
    else:
        block_p, block_c = _TILE_NHWC if channels_last else _TILE_NCHW
        target = _TARGET_PROGRAMS
    c_blocks = cdiv(c, block_c)
    p_blocks = cdiv(hw, block_p)
    chunks = max(1, min(p_blocks, cdiv(target, nt * c_blocks)))
    blocks_per_chunk = cdiv(p_blocks, chunks)
    chunks = cdiv(p_blocks, blocks_per_chunk)
    return block_p, block_c, c_blocks, chunks, blocks_per_chunk


def _shift_forward_launch(x, y_fwd, y_bwd, weight, num_segments):
    excite = y_fwd is not None
    out = empty_like_layout(x, x.shape)
    n_elem = out.numel()
    if not n_elem:
        return out
    x_d = dense_in_layout_of(x, x)
    yf = dense_in_layout_of(y_fwd, x) if excite else x_d
    yb = dense_in_layout_of(y_bwd, x) if excite else x_d
    _, c, h, w = x.shape
    torch.library.wrap_triton(_shift_fwd_kernel)[grid_1d(n_elem)](
        x_d, yf, yb, weight.reshape(c, 3).contiguous(), out, n_elem, c, h * w, c * h * w,
        num_segments, EXCITE=excite, CHANNELS_LAST=is_channels_last(x),
        INT64=needs_int64(x_d), F64=is_f64(x))
    return out


def _shift_backward_launch(grad_out, x, y_fwd, y_bwd, weight, num_segments):
    excite = y_fwd is not None
    nt, c, h, w = x.shape
    dx = empty_like_layout(x, x.shape)
    dyf = empty_like_layout(x, x.shape) if excite else None
    dyb = empty_like_layout(x, x.shape) if excite else None
    if not dx.numel():
        return dx, dyf, dyb, weight.new_zeros(weight.shape)
    g = dense_in_layout_of(grad_out, x)
    x_d = dense_in_layout_of(x, x)
    yf = dense_in_layout_of(y_fwd, x) if excite else x_d
    yb = dense_in_layout_of(y_bwd, x) if excite else x_d
    channels_last = is_channels_last(x)
    block_p, block_c, c_blocks, chunks, blocks_per_chunk = _reduction_plan(
        nt, c, h * w, channels_last)
    acc_dtype = torch.float64 if is_f64(x) else torch.float32
    partial = torch.empty((nt * chunks, c, 3), dtype=acc_dtype, device=x.device)
    torch.library.wrap_triton(_shift_bwd_kernel)[(nt * chunks, c_blocks)](
        g, x_d, yf, yb, weight.reshape(c, 3).contiguous(), dx,
        dyf if excite else dx, dyb if excite else dx, partial,
        c, h * w, c * h * w, num_segments, chunks, blocks_per_chunk,
        EXCITE=excite, CHANNELS_LAST=channels_last, INT64=needs_int64(g, partial),
        F64=is_f64(x), BLOCK_P=block_p, BLOCK_C=block_c, num_warps=_TILE_WARPS)
    grad_weight = weight.new_empty(weight.shape)
    block_r, block_cols = _SUM_ROWS_TILE
    torch.library.wrap_triton(_sum_rows_kernel)[(cdiv(3 * c, block_cols),)](
        partial, grad_weight, nt * chunks, 3 * c, INT64=needs_int64(partial),
        BLOCK_R=block_r, BLOCK_COLS=block_cols, num_warps=4)
    return dx, dyf, dyb, grad_weight


# ------------------------------------------------------------------ bidirectional_excitation

def _excitation_forward(x: torch.Tensor, y_fwd: torch.Tensor, y_bwd: torch.Tensor) -> torch.Tensor:
    out = empty_like_layout(x, x.shape)
    n_elem = out.numel()
    if n_elem:
        torch.library.wrap_triton(_excitation_fwd_kernel)[grid_1d(n_elem)](
            dense_in_layout_of(x, x), dense_in_layout_of(y_fwd, x), dense_in_layout_of(y_bwd, x),
            out, n_elem, INT64=needs_int64(out), F64=is_f64(x))
    return out


def _excitation_backward(grad_out: torch.Tensor, x: torch.Tensor, y_fwd: torch.Tensor,
                         y_bwd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dx, dyf, dyb = (empty_like_layout(x, x.shape) for _ in range(3))
    n_elem = dx.numel()
    if n_elem:
        torch.library.wrap_triton(_excitation_bwd_kernel)[grid_1d(n_elem)](
            dense_in_layout_of(grad_out, x), dense_in_layout_of(x, x),
            dense_in_layout_of(y_fwd, x), dense_in_layout_of(y_bwd, x), dx, dyf, dyb, n_elem,
            INT64=needs_int64(dx), F64=is_f64(x))
    return dx, dyf, dyb


def _save_tensors(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _save_tensors_and_segments(ctx, inputs, output):
    # (tensors..., num_segments); num_segments may be a SymInt under torch.compile.
    ctx.save_for_backward(*inputs[:-1])
    ctx.num_segments = inputs[-1]


def _excitation_input_grads(ctx, run_backward, grad_out):
    return tuple(run_backward(grad_out, *ctx.saved_tensors))


bidirectional_excitation = define_operator(
    "bidirectional_excitation", forward=_excitation_forward, backward=_excitation_backward,
    setup_context=_save_tensors, input_grads=_excitation_input_grads,
    doc="Triton bidirectional_excitation(x, y_fwd, y_bwd); see "
        "tdn_ops.bidirectional_excitation.")


# ------------------------------------------------------------------------ temporal_shift_conv

def _shift_forward(x: torch.Tensor, weight: torch.Tensor, num_segments: int) -> torch.Tensor:
    return _shift_forward_launch(x, None, None, weight, num_segments)


def _shift_backward(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                    num_segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    dx, _, _, grad_weight = _shift_backward_launch(grad_out, x, None, None, weight, num_segments)
    return dx, grad_weight


def _shift_input_grads(ctx, run_backward, grad_out):
    x, weight = ctx.saved_tensors
    grad_x, grad_weight = run_backward(grad_out, x, weight, ctx.num_segments)
    return grad_x, grad_weight, None


temporal_shift_conv = define_operator(
    "temporal_shift_conv", forward=_shift_forward, backward=_shift_backward,
    setup_context=_save_tensors_and_segments, input_grads=_shift_input_grads,
    doc="Triton temporal_shift_conv(x, weight, num_segments); see tdn_ops.temporal_shift_conv.")


# ------------------------------------------------------------------------------- excite_shift

def _excite_shift_forward(x: torch.Tensor, y_fwd: torch.Tensor, y_bwd: torch.Tensor,
                          weight: torch.Tensor, num_segments: int) -> torch.Tensor:
    return _shift_forward_launch(x, y_fwd, y_bwd, weight, num_segments)


def _excite_shift_backward(
    grad_out: torch.Tensor, x: torch.Tensor, y_fwd: torch.Tensor, y_bwd: torch.Tensor,
    weight: torch.Tensor, num_segments: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return _shift_backward_launch(grad_out, x, y_fwd, y_bwd, weight, num_segments)


def _excite_shift_input_grads(ctx, run_backward, grad_out):
    grads = run_backward(grad_out, *ctx.saved_tensors, ctx.num_segments)
    return tuple(grads) + (None,)


excite_shift = define_operator(
    "excite_shift", forward=_excite_shift_forward, backward=_excite_shift_backward,
    setup_context=_save_tensors_and_segments, input_grads=_excite_shift_input_grads,
    doc="Triton excite_shift(x, y_fwd, y_bwd, weight, num_segments); see "
        "tdn_ops.excite_shift.")
