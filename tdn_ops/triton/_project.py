"""project_excite_shift: the L-TDM's projection, affine, excitation and temporal shift.

``y_d = scale[d] * (W @ m_d) + bias[d]`` (W: (C, c)), ``e = x*(0.5 + 0.5*σ(y_0) + 0.5*σ(y_1))``,
``out[t] = w0*e[t-1] + w1*e[t] + w2*e[t+1]``. Neither ``y_d`` nor ``e`` is written to memory:
every program recomputes them for its tile from the c-channel ``m_d`` with ``tl.dot`` (IEEE
float32 products, never TF32: the result must match the CPU kernels).

* Forward: one program per (frame, pixel block, channel block) computes e for the three frames
  it reads.
* Backward: one program per (frame, pixel block) walks all channel blocks, so that it owns the
  gradient of ``m_d`` at its pixels (a sum over every channel) and writes it once. Its shares
  of the parameter gradients (shift weight, scale, bias, W) go to its own row of a float32
  buffer; a second kernel adds the rows in a fixed order. No atomics, tiles fixed by shape:
  bitwise the same on every run.

Inputs are made dense in ``x``'s layout (``mixed`` per direction), so frame t+1 sits ``C*H*W``
elements after frame t in both layouts.
"""

import torch
import triton
import triton.language as tl

from .._layout import empty_like_layout, empty_stacked_like_layout
from ._common import cdiv, is_channels_last, is_f64, needs_int64, sigmoid
from ._temporal import _sum_rows_kernel
from ._wiring import define_operator

__all__ = ["project_excite_shift"]

_BLOCK_P = 32        # pixels per tile
_BLOCK_C = 32        # channels per tile
_WARPS = 4
_SUM_ROWS_TILE = (32, 64)


@triton.jit
def _tile_offsets(ps, ks, HW, C, CHANNELS_LAST: tl.constexpr):
    """Offsets within one frame of the (pixel, channel) tile ``ps`` x ``ks``."""
    if CHANNELS_LAST:
        return ps[:, None] * C + ks[None, :]
    return ps[:, None] + ks[None, :] * HW


@triton.jit
def _projection(m_ptr, m_off, ps, p_ok, js, j_ok, w_t, HW, c,
                CHANNELS_LAST: tl.constexpr, ACC: tl.constexpr):
    """(m tile [P, J] of one frame and direction, W m as a [P, C-block] tile)."""
    m = tl.load(m_ptr + m_off + _tile_offsets(ps, js, HW, c, CHANNELS_LAST),
                mask=p_ok[:, None] & j_ok[None, :], other=0.0).to(ACC)
    return m, tl.dot(m, w_t, input_precision="ieee", out_dtype=ACC)


@triton.jit
def _channel_params(scale_ptr, bias_ptr, taps_ptr, ks, k_ok, C, ACC: tl.constexpr):
    """Channels ``ks``' affine of each direction and shift taps, as [1, C-block] rows:
    (scale_0, bias_0, scale_1, bias_1, tap_0, tap_1, tap_2)."""
    s0 = tl.load(scale_ptr + ks, mask=k_ok, other=0.0).to(ACC)[None, :]
    b0 = tl.load(bias_ptr + ks, mask=k_ok, other=0.0).to(ACC)[None, :]
    s1 = tl.load(scale_ptr + C + ks, mask=k_ok, other=0.0).to(ACC)[None, :]
    b1 = tl.load(bias_ptr + C + ks, mask=k_ok, other=0.0).to(ACC)[None, :]
    w0 = tl.load(taps_ptr + ks * 3, mask=k_ok, other=0.0).to(ACC)[None, :]
    w1 = tl.load(taps_ptr + ks * 3 + 1, mask=k_ok, other=0.0).to(ACC)[None, :]
    w2 = tl.load(taps_ptr + ks * 3 + 2, mask=k_ok, other=0.0).to(ACC)[None, :]
    return s0, b0, s1, b1, w0, w1, w2


@triton.jit
def _excited(x_ptr, m_ptr, plane, m_plane, m_dir, ps, p_ok, ks, k_ok, js, j_ok, w_t,
             s0, b0, s1, b1, HW, C, c, valid, CHANNELS_LAST: tl.constexpr, ACC: tl.constexpr):
    """e of one frame's tile; zero for the pixels where ``valid`` is off (the frame lies
    outside the video)."""
    p_in = p_ok & valid
    ok = p_in[:, None] & k_ok[None, :]
    x = tl.load(x_ptr + plane + _tile_offsets(ps, ks, HW, C, CHANNELS_LAST), mask=ok,
                other=0.0).to(ACC)
    _, z0 = _projection(m_ptr, m_plane, ps, p_in, js, j_ok, w_t, HW, c, CHANNELS_LAST, ACC)
    _, z1 = _projection(m_ptr, m_dir + m_plane, ps, p_in, js, j_ok, w_t, HW, c, CHANNELS_LAST,
                        ACC)
    f0 = sigmoid(s0 * z0 + b0)
    f1 = sigmoid(s1 * z1 + b1)
    # Padding (pixels past HW, channels past C, frames outside the video) is forced to zero:
    # there the zeros of the masked loads can meet an infinite weight in the products (NaN),
    # which must not reach the real outputs (docs/math.md §6, non-finite values).
    return tl.where(ok, x * (0.5 + 0.5 * f0 + 0.5 * f1), 0.0)


@triton.jit
def _forward_kernel(x_ptr, m_ptr, w_ptr, scale_ptr, bias_ptr, taps_ptr, out_ptr,
                    C, c, HW, T, p_blocks, m_dir,
                    CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr, F64: tl.constexpr,
                    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_J: tl.constexpr):
    ACC = tl.float64 if F64 else tl.float32
    row = tl.program_id(0)
    cb = tl.program_id(1)
    if INT64:
        row = row.to(tl.int64)
    nt = row // p_blocks
    t = nt % T
    ps = (row % p_blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
    ks = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    js = tl.arange(0, BLOCK_J)
    if INT64:
        ps = ps.to(tl.int64)
        ks = ks.to(tl.int64)
    p_ok = ps < HW
    k_ok = ks < C
    j_ok = js < c
    # W^T block [J, C-block] and the per-channel parameters.
    w_t = tl.load(w_ptr + ks[None, :] * c + js[:, None], mask=j_ok[:, None] & k_ok[None, :],
                  other=0.0).to(ACC)
    s0, b0, s1, b1, w0, w1, w2 = _channel_params(scale_ptr, bias_ptr, taps_ptr, ks, k_ok, C, ACC)
    CHW = C * HW
    cHW = c * HW
    # Frame conditions as vectors (the interpreter rejects scalar masks).
    t_vec = t + tl.zeros([BLOCK_P], dtype=tl.int32)
    prev_ok = t_vec >= 1
    next_ok = t_vec < T - 1
    here_ok = t_vec >= 0
    e_prev = _excited(x_ptr, m_ptr, (nt - 1) * CHW, (nt - 1) * cHW, m_dir, ps, p_ok, ks, k_ok,
                      js, j_ok, w_t, s0, b0, s1, b1, HW, C, c, prev_ok, CHANNELS_LAST, ACC)
    e_here = _excited(x_ptr, m_ptr, nt * CHW, nt * cHW, m_dir, ps, p_ok, ks, k_ok, js, j_ok,
                      w_t, s0, b0, s1, b1, HW, C, c, here_ok, CHANNELS_LAST, ACC)
    e_next = _excited(x_ptr, m_ptr, (nt + 1) * CHW, (nt + 1) * cHW, m_dir, ps, p_ok, ks, k_ok,
                      js, j_ok, w_t, s0, b0, s1, b1, HW, C, c, next_ok, CHANNELS_LAST, ACC)
    out = w0 * e_prev + w1 * e_here + w2 * e_next
    ok = p_ok[:, None] & k_ok[None, :]
    tl.store(out_ptr + nt * CHW + _tile_offsets(ps, ks, HW, C, CHANNELS_LAST),
             out.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _backward_kernel(g_ptr, x_ptr, m_ptr, w_ptr, scale_ptr, bias_ptr, taps_ptr,
                     dx_ptr, dm_ptr, partial_ptr, C, c, HW, T, p_blocks, m_dir, n_cols,
                     CHANNELS_LAST: tl.constexpr, INT64: tl.constexpr, F64: tl.constexpr,
                     BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_J: tl.constexpr):
    ACC = tl.float64 if F64 else tl.float32
    # Program `row` = (frame nt, pixel block). Its partial row: shift weight (C, 3), scale
    # (2, C), bias (2, C), W (C, c), each its share of the gradient.
    row = tl.program_id(0)
    if INT64:
        row = row.to(tl.int64)
    nt = row // p_blocks
    t = nt % T
    ps = (row % p_blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
    js = tl.arange(0, BLOCK_J)
    if INT64:
        ps = ps.to(tl.int64)
    p_ok = ps < HW
    j_ok = js < c
    CHW = C * HW
    cHW = c * HW
    t_vec = t + tl.zeros([BLOCK_P], dtype=tl.int32)
    prev_ok = (t_vec >= 1)[:, None]
    next_ok = (t_vec < T - 1)[:, None]
    pj_ok = p_ok[:, None] & j_ok[None, :]
    m0 = tl.load(m_ptr + nt * cHW + _tile_offsets(ps, js, HW, c, CHANNELS_LAST), mask=pj_ok,
                 other=0.0).to(ACC)
    m1 = tl.load(m_ptr + m_dir + nt * cHW + _tile_offsets(ps, js, HW, c, CHANNELS_LAST),
                 mask=pj_ok, other=0.0).to(ACC)
    dm0 = tl.zeros([BLOCK_P, BLOCK_J], dtype=ACC)
    dm1 = tl.zeros([BLOCK_P, BLOCK_J], dtype=ACC)
    out_row = partial_ptr + row * n_cols
    for c0 in range(0, C, BLOCK_C):
        ks = c0 + tl.arange(0, BLOCK_C)
        if INT64:
            ks = ks.to(tl.int64)
        k_ok = ks < C
        ok = p_ok[:, None] & k_ok[None, :]
        w_blk = tl.load(w_ptr + ks[:, None] * c + js[None, :], mask=k_ok[:, None] & j_ok[None, :],
                        other=0.0).to(ACC)
        s0, b0, s1, b1, w0, w1, w2 = _channel_params(scale_ptr, bias_ptr, taps_ptr, ks, k_ok, C,
                                                     ACC)
        off = nt * CHW + _tile_offsets(ps, ks, HW, C, CHANNELS_LAST)
        g_here = tl.load(g_ptr + off, mask=ok, other=0.0).to(ACC)
        g_prev = tl.load(g_ptr + off - CHW, mask=ok & prev_ok, other=0.0).to(ACC)
        g_next = tl.load(g_ptr + off + CHW, mask=ok & next_ok, other=0.0).to(ACC)
        x = tl.load(x_ptr + off, mask=ok, other=0.0).to(ACC)
        w_t = tl.trans(w_blk)
        z0 = tl.dot(m0, w_t, input_precision="ieee", out_dtype=ACC)
        z1 = tl.dot(m1, w_t, input_precision="ieee", out_dtype=ACC)
        f0 = sigmoid(s0 * z0 + b0)
        f1 = sigmoid(s1 * z1 + b1)
        gate = 0.5 + 0.5 * f0 + 0.5 * f1
        # As in _excited: padded pixels and channels hold zero, never the NaN that a masked
        # load's zero times an infinite weight makes, before they enter the sums and products.
        e = tl.where(ok, x * gate, 0.0)
        # out[t'] reads e[t] with tap 2 (t' = t-1), 1 (t' = t) and 0 (t' = t+1). A tap whose
        # frame lies outside the video is left out, not multiplied by the zero of the masked
        # load: an infinite tap would make that NaN (docs/math.md §6, non-finite values).
        ge = (tl.where(next_ok, w0 * g_next, 0.0) + w1 * g_here
              + tl.where(prev_ok, w2 * g_prev, 0.0))
        tl.store(dx_ptr + off, (ge * gate).to(dx_ptr.dtype.element_ty), mask=ok)
        gx = 0.5 * ge * x
        dy0 = tl.where(ok, gx * f0 * (1.0 - f0), 0.0)
        dy1 = tl.where(ok, gx * f1 * (1.0 - f1), 0.0)
        tl.store(out_row + ks * 3, tl.sum(tl.where(next_ok, g_next * e, 0.0), axis=0),
                 mask=k_ok)
        tl.store(out_row + ks * 3 + 1, tl.sum(g_here * e, axis=0), mask=k_ok)
        tl.store(out_row + ks * 3 + 2, tl.sum(tl.where(prev_ok, g_prev * e, 0.0), axis=0),
                 mask=k_ok)
        tl.store(out_row + 3 * C + ks, tl.sum(dy0 * z0, axis=0), mask=k_ok)
        tl.store(out_row + 4 * C + ks, tl.sum(dy1 * z1, axis=0), mask=k_ok)
        tl.store(out_row + 5 * C + ks, tl.sum(dy0, axis=0), mask=k_ok)
        tl.store(out_row + 6 * C + ks, tl.sum(dy1, axis=0), mask=k_ok)
        u0 = s0 * dy0
        u1 = s1 * dy1
        dm0 += tl.dot(u0, w_blk, input_precision="ieee", out_dtype=ACC)
        dm1 += tl.dot(u1, w_blk, input_precision="ieee", out_dtype=ACC)
        dw = (tl.dot(tl.trans(u0), m0, input_precision="ieee", out_dtype=ACC)
              + tl.dot(tl.trans(u1), m1, input_precision="ieee", out_dtype=ACC))
        tl.store(out_row + 7 * C + ks[:, None] * c + js[None, :], dw,
                 mask=k_ok[:, None] & j_ok[None, :])
    m_off = nt * cHW + _tile_offsets(ps, js, HW, c, CHANNELS_LAST)
    tl.store(dm_ptr + m_off, dm0.to(dm_ptr.dtype.element_ty), mask=pj_ok)
    tl.store(dm_ptr + m_dir + m_off, dm1.to(dm_ptr.dtype.element_ty), mask=pj_ok)


def _dense_mixed(mixed: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``mixed`` (2, NT, c, H, W) as one dense buffer whose halves have ``x``'s layout."""
    if is_channels_last(x):
        return mixed.permute(0, 1, 3, 4, 2).contiguous()
    return mixed.contiguous()


def _block_j(c: int) -> int:
    # tl.dot needs every dimension >= 16 and a power of two.
    return max(16, triton.next_power_of_2(c))


def _forward(x: torch.Tensor, mixed: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor,
             bias: torch.Tensor, shift_weight: torch.Tensor, num_segments: int) -> torch.Tensor:
    out = empty_like_layout(x, x.shape)
    if not out.numel():
        return out
    nt, channels, h, w = x.shape
    mid = weight.shape[1]
    x_d = x.contiguous(memory_format=torch.channels_last if is_channels_last(x)
                       else torch.contiguous_format)
    m_d = _dense_mixed(mixed, x)
    p_blocks = cdiv(h * w, _BLOCK_P)
    torch.library.wrap_triton(_forward_kernel)[(nt * p_blocks, cdiv(channels, _BLOCK_C))](
        x_d, m_d, weight.contiguous(), scale.contiguous(), bias.contiguous(),
        shift_weight.reshape(channels, 3).contiguous(), out, channels, mid, h * w, num_segments,
        p_blocks, nt * mid * h * w, CHANNELS_LAST=is_channels_last(x), INT64=needs_int64(x_d, m_d),
        F64=is_f64(x), BLOCK_P=_BLOCK_P, BLOCK_C=_BLOCK_C, BLOCK_J=_block_j(mid),
        num_warps=_WARPS)
    return out


def _backward(grad_out: torch.Tensor, x: torch.Tensor, mixed: torch.Tensor,
              weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor,
              shift_weight: torch.Tensor, num_segments: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                         torch.Tensor]:
    nt, channels, h, w = x.shape
    mid = weight.shape[1]
    dx = empty_like_layout(x, x.shape)
    dm = empty_stacked_like_layout(x, mixed.shape)
    n_cols = 7 * channels + channels * mid
    acc_dtype = torch.float64 if is_f64(x) else torch.float32
    totals = torch.zeros(n_cols, dtype=acc_dtype, device=x.device)
    if dx.numel():
        fmt = torch.channels_last if is_channels_last(x) else torch.contiguous_format
        g = grad_out.contiguous(memory_format=fmt)
        x_d = x.contiguous(memory_format=fmt)
        m_d = _dense_mixed(mixed, x)
        # The kernel writes dm through the dense buffer behind the stacked layout.
        dm_d = dm.permute(0, 1, 3, 4, 2) if is_channels_last(x) else dm
        p_blocks = cdiv(h * w, _BLOCK_P)
        rows = nt * p_blocks
        partial = torch.empty((rows, n_cols), dtype=acc_dtype, device=x.device)
        torch.library.wrap_triton(_backward_kernel)[(rows,)](
            g, x_d, m_d, weight.contiguous(), scale.contiguous(), bias.contiguous(),
            shift_weight.reshape(channels, 3).contiguous(), dx, dm_d, partial, channels, mid,
            h * w, num_segments, p_blocks, nt * mid * h * w, n_cols, CHANNELS_LAST=is_channels_last(x),
            INT64=needs_int64(g, m_d, partial), F64=is_f64(x), BLOCK_P=_BLOCK_P,
            BLOCK_C=_BLOCK_C, BLOCK_J=_block_j(mid), num_warps=_WARPS)
        block_r, block_cols = _SUM_ROWS_TILE
        torch.library.wrap_triton(_sum_rows_kernel)[(cdiv(n_cols, block_cols),)](
            partial, totals, rows, n_cols, INT64=needs_int64(partial), BLOCK_R=block_r,
            BLOCK_COLS=block_cols, num_warps=4)
    dtype = x.dtype
    d_shift = totals[:3 * channels].reshape(channels, 1, 3).to(dtype)
    d_scale = totals[3 * channels:5 * channels].reshape(2, channels).to(dtype)
    d_bias = totals[5 * channels:7 * channels].reshape(2, channels).to(dtype)
    d_weight = totals[7 * channels:].reshape(channels, mid).to(dtype)
    return dx, dm, d_weight.clone(), d_scale.clone(), d_bias.clone(), d_shift.clone()


def _save_tensors_and_segments(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:-1])
    ctx.num_segments = inputs[-1]


def _input_grads(ctx, run_backward, grad_out):
    return tuple(run_backward(grad_out, *ctx.saved_tensors, ctx.num_segments)) + (None,)


project_excite_shift = define_operator(
    "project_excite_shift", forward=_forward, backward=_backward,
    setup_context=_save_tensors_and_segments, input_grads=_input_grads,
    doc="Triton project_excite_shift(x, mixed, weight, scale, bias, shift_weight, "
        "num_segments); see tdn_ops.project_excite_shift.")
