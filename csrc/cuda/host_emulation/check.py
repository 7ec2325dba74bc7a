"""Compare the host-emulated CUDA launchers (run.sh builds them) with tdn_ops.reference.

Each operator's forward and backward launchers are called the way csrc/cuda/binding.cpp
calls them (inputs made dense in the primary input's layout, outputs allocated in it), on
CPU tensors, and compared in relative norm with the float64 reference and its autograd.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from op_cases import (ALL_CASES, TOLERANCE, Case, as_tuple, make_args,  # noqa: E402
                      reference_op, rel_error, tensor_positions, with_grad)

LIB = ctypes.CDLL(os.environ["TDN_EMU_LIB"])
LIB.sh_ws.restype = ctypes.c_int64
LIB.pes_ws.restype = ctypes.c_int64
DTYPE_CODE = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2, torch.float64: 3}
I64, DBL = ctypes.c_int64, ctypes.c_double


def ptr(t):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def layout_of(t):  # tdn::layout_of
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def dense(t, fmt):
    return t.contiguous(memory_format=fmt) if t.dim() == 4 else t.contiguous()


def empty(ref, shape, fmt):
    return torch.empty(shape, dtype=ref.dtype).contiguous(memory_format=fmt) \
        if len(shape) == 4 else torch.empty(shape, dtype=ref.dtype)


def empty_stacked(ref, b, c, h, w, fmt):  # tdn::empty_stacked
    if fmt == torch.channels_last:
        return torch.empty((2, b, h, w, c), dtype=ref.dtype).permute(0, 1, 4, 2, 3)
    return torch.empty((2, b, c, h, w), dtype=ref.dtype)


def call(fn, *args):
    status = fn(*args)
    assert status == 0, f"launcher returned {status}"


def is_cl(fmt):
    return int(fmt == torch.channels_last)


def forward(op, args):
    if op == "temporal_diff_pool":
        x, frames, k = args
        fmt = layout_of(x)
        x = dense(x, fmt)
        b, ci, h, w = x.shape
        out = empty(x, (b, ci // frames * (frames - 1), h // k, w // k), fmt)
        call(LIB.tdp_f, ptr(x), ptr(out), DTYPE_CODE[x.dtype], I64(b), I64(frames),
             I64(ci // frames), I64(h), I64(w), I64(k), is_cl(fmt))
        return (out,)
    if op == "cross_segment_diff":
        feat, aligned, t = args
        fmt = layout_of(feat)
        feat, aligned = dense(feat, fmt), dense(aligned, fmt)
        b, c, h, w = feat.shape
        diff, pooled = empty_stacked(feat, b, c, h, w, fmt), empty_stacked(feat, b, c, h // 2, w // 2, fmt)
        call(LIB.csd_f, ptr(feat), ptr(aligned), ptr(diff[0]), ptr(diff[1]), ptr(pooled[0]),
             ptr(pooled[1]), DTYPE_CODE[feat.dtype], I64(b), I64(c), I64(h), I64(w), I64(t),
             is_cl(fmt))
        return diff, pooled
    if op == "multiscale_sum":
        diff, pooled_branch, full = args
        c, h, w = diff.shape[-3:]
        ph, pw = pooled_branch.shape[-2:]
        d4 = diff.reshape(-1, c, h, w)
        fmt = layout_of(d4)
        d4, f4 = dense(d4, fmt), dense(full.reshape(-1, c, h, w), fmt)
        p4 = dense(pooled_branch.reshape(-1, c, ph, pw), fmt)
        out = empty(d4, tuple(d4.shape), fmt)
        call(LIB.up_f, ptr(d4), ptr(p4), ptr(f4), ptr(out), DTYPE_CODE[diff.dtype],
             I64(d4.shape[0]), I64(c), I64(h), I64(w), I64(ph), I64(pw), DBL(1 / 3),
             DBL(1 / 3), DBL(1 / 3), is_cl(fmt))
        return (out.view(diff.shape),)
    if op == "lateral_fuse":
        x, d, alpha, beta = args
        fmt = layout_of(x)
        x, d = dense(x, fmt), dense(d, fmt)
        out = empty(x, tuple(x.shape), fmt)
        call(LIB.up_f, ptr(x), ptr(d), None, ptr(out), DTYPE_CODE[x.dtype],
             *[I64(v) for v in x.shape], I64(d.shape[2]), I64(d.shape[3]), DBL(alpha),
             DBL(beta), DBL(0.0), is_cl(fmt))
        return (out,)
    if op == "bidirectional_excitation":
        fmt = layout_of(args[0])
        x, yf, yb = (dense(t, fmt) for t in args)
        out = empty(x, tuple(x.shape), fmt)
        call(LIB.ex_f, ptr(x), ptr(yf), ptr(yb), ptr(out), DTYPE_CODE[x.dtype], I64(x.numel()))
        return (out,)
    if op == "project_excite_shift":
        x, mixed, weight, scale, bias, shift_weight, t = args
        fmt = layout_of(x)
        x = dense(x, fmt)
        out = empty(x, tuple(x.shape), fmt)
        if x.numel() == 0:
            return (out,)
        params = [p.contiguous() for p in (weight, scale, bias, shift_weight)]
        m = mixed_in_layout(mixed, fmt)  # held: the launcher gets a raw pointer
        call(LIB.pes_f, ptr(x), ptr(m), *map(ptr, params), ptr(out), DTYPE_CODE[x.dtype],
             *_project_shape(x, weight, t, fmt))
        return (out,)
    x, yf, yb, weight, t = _shift_args(op, args)
    fmt = layout_of(x)
    x, weight = dense(x, fmt), weight.contiguous()
    yf, yb = (None, None) if yf is None else (dense(yf, fmt), dense(yb, fmt))
    out = empty(x, tuple(x.shape), fmt)
    n, c, h, w = x.shape
    call(LIB.sh_f, ptr(x), ptr(yf), ptr(yb), ptr(weight), ptr(out), DTYPE_CODE[x.dtype],
         I64(n // t), I64(t), I64(c), I64(h * w), is_cl(fmt))
    return (out,)


def mixed_in_layout(mixed, fmt):  # binding.cpp's mixed_in_layout: halves dense in fmt
    if fmt == torch.channels_last:
        return mixed.permute(0, 1, 3, 4, 2).contiguous()
    return mixed.contiguous()


def _project_shape(x, weight, t, fmt):
    n, c, h, w = x.shape
    return I64(n // t), I64(t), I64(c), I64(weight.shape[1]), I64(h * w), is_cl(fmt)


def _project_backward(args, g):
    x, mixed, weight, scale, bias, shift_weight, t = args
    fmt = layout_of(x)
    x, g = dense(x, fmt), dense(g, fmt)
    n, c, h, w = x.shape
    dx = empty(x, tuple(x.shape), fmt)
    dm = empty_stacked(x, n, weight.shape[1], h, w, fmt)
    params = [p.contiguous() for p in (weight, scale, bias, shift_weight)]
    # The parameter gradients must be fully overwritten (zero for an empty batch), and the
    # workspace's initial contents must not matter.
    d_params = [torch.full_like(p, float("nan")) for p in params]
    shape = _project_shape(x, weight, t, fmt)
    ws = torch.full((max(1, LIB.pes_ws(DTYPE_CODE[x.dtype], *shape)),), 255, dtype=torch.uint8)
    m = mixed_in_layout(mixed, fmt) if x.numel() else mixed
    call(LIB.pes_b, ptr(g), ptr(x), ptr(m), *map(ptr, params), ptr(dx), ptr(dm),
         *map(ptr, d_params), ptr(ws), DTYPE_CODE[x.dtype], *shape)
    return [dx, dm, *d_params]


def _shift_args(op, args):
    if op == "temporal_shift_conv":
        x, weight, t = args
        return x, None, None, weight, t
    return args


def backward(op, args, grads_out):
    if op == "temporal_diff_pool":
        x, frames, k = args
        fmt = layout_of(grads_out[0])
        g = dense(grads_out[0], fmt)
        c = g.shape[1] // (frames - 1)
        gx = empty(g, (g.shape[0], c * frames) + tuple(x.shape[2:]), fmt)
        call(LIB.tdp_b, ptr(g), ptr(gx), DTYPE_CODE[g.dtype], I64(g.shape[0]), I64(frames),
             I64(c), I64(x.shape[2]), I64(x.shape[3]), I64(k), is_cl(fmt))
        return [gx]
    if op == "cross_segment_diff":
        gd, gp = grads_out
        fmt = layout_of(gd[0])
        gd, gp = [dense(gd[i], fmt) for i in (0, 1)], [dense(gp[i], fmt) for i in (0, 1)]
        g_feat, g_aligned = empty(gd[0], tuple(gd[0].shape), fmt), empty(gd[0], tuple(gd[0].shape), fmt)
        call(LIB.csd_b, ptr(gd[0]), ptr(gd[1]), ptr(gp[0]), ptr(gp[1]), ptr(g_feat),
             ptr(g_aligned), DTYPE_CODE[g_feat.dtype], *[I64(v) for v in gd[0].shape],
             I64(args[2]), is_cl(fmt))
        return [g_feat, g_aligned]
    if op in ("multiscale_sum", "lateral_fuse"):
        g = grads_out[0]
        c, h, w = g.shape[-3:]
        sh, sw = args[1].shape[-2:]
        g4 = g.reshape(-1, c, h, w)
        fmt = layout_of(g4)
        g4 = dense(g4, fmt)
        g_direct, g_small = empty(g4, tuple(g4.shape), fmt), empty(g4, (g4.shape[0], c, sh, sw), fmt)
        s_direct, s_gather = (1 / 3, 1 / 3) if op == "multiscale_sum" else (args[2], args[3])
        call(LIB.up_b, ptr(g4), ptr(g_direct), ptr(g_small), DTYPE_CODE[g.dtype],
             I64(g4.shape[0]), I64(c), I64(h), I64(w), I64(sh), I64(sw), DBL(s_direct),
             DBL(s_gather), is_cl(fmt))
        g_direct = g_direct.view(g.shape)
        g_small = g_small.view(tuple(g.shape[:-2]) + (sh, sw))
        return [g_direct, g_small, g_direct] if op == "multiscale_sum" else [g_direct, g_small]
    if op == "bidirectional_excitation":
        fmt = layout_of(args[0])
        g, x, yf, yb = (dense(t, fmt) for t in (grads_out[0], *args))
        outs = [empty(x, tuple(x.shape), fmt) for _ in range(3)]
        call(LIB.ex_b, ptr(g), ptr(x), ptr(yf), ptr(yb), *map(ptr, outs), DTYPE_CODE[x.dtype],
             I64(x.numel()))
        return outs
    if op == "project_excite_shift":
        return _project_backward(args, grads_out[0])
    x, yf, yb, weight, t = _shift_args(op, args)
    fmt = layout_of(x)
    x, g, weight = dense(x, fmt), dense(grads_out[0], fmt), weight.contiguous()
    excite = yf is not None
    yf, yb = (dense(yf, fmt), dense(yb, fmt)) if excite else (None, None)
    n, c, h, w = x.shape
    shape = (I64(n // t), I64(t), I64(c), I64(h * w), is_cl(fmt))
    dx = empty(x, tuple(x.shape), fmt)
    dyf, dyb = (empty(x, tuple(x.shape), fmt), empty(x, tuple(x.shape), fmt)) if excite else (None, None)
    dw = torch.full_like(weight, float("nan"))  # must be fully overwritten
    ws = torch.full((max(1, LIB.sh_ws(DTYPE_CODE[x.dtype], *shape)),), 255, dtype=torch.uint8)
    call(LIB.sh_b, ptr(g), ptr(x), ptr(yf), ptr(yb), ptr(weight), ptr(dx), ptr(dyf), ptr(dyb),
         ptr(dw), ptr(ws), DTYPE_CODE[x.dtype], *shape)
    return [dx, dyf, dyb, dw] if excite else [dx, dw]


def misaligned(t):
    """The same values one element past an aligned address (forces the scalar paths)."""
    if not isinstance(t, torch.Tensor) or t.dim() < 3:
        return t
    storage = torch.empty(t.numel() + 1, dtype=t.dtype)
    view = storage[1:].as_strided(t.shape, t.stride())
    view.copy_(t)
    return view


# The operators with CUDA kernels in csrc/cuda (an operator without one is named, not checked).
EMULATED = ("temporal_diff_pool", "cross_segment_diff", "multiscale_sum",
            "bidirectional_excitation", "temporal_shift_conv", "excite_shift", "lateral_fuse",
            "project_excite_shift")

# Shapes only the emulation adds, for tilings the shared cases do not reach:
# project_excite_shift (N, T, C, c, H, W) with c beyond one staged chunk of mid channels
# (float: 64, double: 16) and beyond one backward group (float: 128, double: 64), partial
# channel blocks, and more mid channels than channels.
EXTRA_CASES = [Case("project_excite_shift", d, "emu")
               for d in ((1, 3, 160, 150, 3, 3), (2, 2, 33, 65, 6, 7), (1, 4, 70, 17, 2, 3),
                         (1, 3, 8, 20, 3, 3))]

# Operators also checked in float64 (their kernels compute in double).
FLOAT64_OPS = ("project_excite_shift",)


def check_empty_batches(ops) -> int:
    """Empty batches (no frames, or no pixels): no elements written, parameter gradients
    exactly zero. Returns the number of failures."""
    if ops and "project_excite_shift" not in ops:
        return 0
    failures = 0
    for nt, h, w in ((0, 3, 3), (4, 0, 5)):
        x = torch.randn(nt, 8, h, w)
        args = [x, torch.randn(2, nt, 2, h, w), torch.randn(8, 2), torch.randn(2, 8),
                torch.randn(2, 8), torch.randn(8, 1, 3), 2 if nt else 1]
        (out,) = forward("project_excite_shift", args)
        grads = backward("project_excite_shift", args, [torch.randn(x.shape)])
        ok = out.shape == x.shape and all(bool((g == 0).all()) for g in grads[2:])
        if not ok:
            failures += 1
            print("FAIL project_excite_shift empty batch", (nt, h, w), flush=True)
    return failures


def main(ops: list[str]) -> int:
    verbose = os.environ.get("V") == "1"
    runs = failures = 0
    worst: dict[tuple[str, torch.dtype], float] = {}
    without_kernel = sorted({case.op for case in ALL_CASES} - set(EMULATED))
    if without_kernel:
        print(f"host emulation: no CUDA kernel to check for {', '.join(without_kernel)}")
    for case in ALL_CASES + EXTRA_CASES:
        if case.op not in EMULATED or (ops and case.op not in ops):
            continue
        dtypes = (torch.float32, torch.bfloat16, torch.float16)
        if case.op in FLOAT64_OPS:
            dtypes += (torch.float64,)
        for dtype, layout, shifted in itertools.product(
                dtypes, ("contiguous", "channels_last", "strided"), (False, True)):
            if shifted and (layout == "strided" or dtype != torch.float32):
                continue
            args = make_args(case, dtype, layout=layout)
            if shifted:
                args = [misaligned(a) for a in args]
            outs = forward(case.op, args)
            ref_args = with_grad([a.double() if isinstance(a, torch.Tensor) else a for a in args])
            ref = as_tuple(reference_op(case.op)(*ref_args))
            gen = torch.Generator().manual_seed(1)
            grads_out = [torch.randn(o.shape, generator=gen, dtype=torch.float64) for o in ref]
            torch.autograd.backward(ref, grads_out)
            ref_grads = [ref_args[i].grad for i in tensor_positions(ref_args)]
            grads = backward(case.op, args, [g.to(dtype) for g in grads_out])
            runs += 1
            pairs = list(zip(outs, ref, strict=True)) + list(zip(grads, ref_grads, strict=True))
            errors = [rel_error(a, b) for a, b in pairs]
            key = (case.op, dtype)
            worst[key] = max(worst.get(key, 0.0), *errors)
            bad_shape = any(a.shape != b.shape for a, b in pairs)
            nan = any(bool(torch.isnan(a).any()) for a, _ in pairs)
            tag = f"{case} {dtype} {layout}{' misaligned' if shifted else ''}"
            if verbose:
                print(tag, ["%.1e" % e for e in errors])
            if max(errors) > TOLERANCE[dtype].norm or bad_shape or nan:
                failures += 1
                print("FAIL", tag, ["%.1e" % e for e in errors], "nan" if nan else "", flush=True)
    failures += check_empty_batches(ops)
    for (op, dtype), err in sorted(worst.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        print(f"  {op} {str(dtype).removeprefix('torch.')}: max relative error {err:.1e} "
              f"(tolerance {TOLERANCE[dtype].norm:.1e})")
    print(f"host emulation: {runs} runs, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
