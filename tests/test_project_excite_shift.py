"""project_excite_shift beyond the shared operator tests: what it must not store, determinism
of its reductions, its argument checks and its use inside torch.compile.

(Values and gradients against the reference in every dtype and layout, gradcheck and opcheck
come from the shared operator tests, through the cases in op_cases.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import tdn_ops
from tdn_ops import reference

pytestmark = pytest.mark.skipif(not tdn_ops.NATIVE_AVAILABLE,
                                reason="tdn_ops._C is not built: the CPU kernels are missing")


def _args(n=2, t=4, channels=32, mid=2, h=5, w=7, dtype=torch.float32, channels_last=False,
          seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)

    x, mixed = rand(n * t, channels, h, w), rand(2, n * t, mid, h, w)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        mixed = mixed.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    return [x, mixed, rand(channels, mid), rand(2, channels), rand(2, channels),
            rand(channels, 1, 3), t]


def _with_grad(args):
    return [a.detach().clone().requires_grad_() if isinstance(a, torch.Tensor) else a
            for a in args]


def _grads(args, backend="cpu", seed=1):
    args = _with_grad(args)
    out = tdn_ops.project_excite_shift(*args, backend=backend)
    gen = torch.Generator().manual_seed(seed)
    out.backward(torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.dtype))
    return out.detach(), [a.grad for a in args[:6]]


def test_saves_only_its_inputs():
    """Neither y_d nor the excited tensor is kept for the backward: what autograd saves is
    exactly the six inputs (no C-channel intermediate)."""
    args = _with_grad(_args())
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        tdn_ops.project_excite_shift(*args, backend="cpu")
    assert len(saved) == 6
    assert sorted(t.numel() for t in saved) == sorted(a.numel() for a in args[:6])


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_parameter_gradients_do_not_depend_on_the_thread_count(dtype, channels_last):
    args = _args(n=3, t=8, channels=64, mid=4, h=9, w=11, dtype=dtype,
                 channels_last=channels_last)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            results.append(_grads(args))
    finally:
        torch.set_num_threads(threads)
    (out1, g1), (out2, g2) = results
    assert torch.equal(out1, out2)
    for a, b in zip(g1, g2):  # every gradient, the four reductions included
        assert torch.equal(a, b)


def test_gradient_layouts_follow_x():
    args = _args(channels_last=True)
    out, grads = _grads(args)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert grads[0].is_contiguous(memory_format=torch.channels_last)
    assert grads[1][0].is_contiguous(memory_format=torch.channels_last)
    assert [g.shape for g in grads] == [a.shape for a in args[:6]]


def test_empty_batch_gives_empty_output_and_zero_parameter_gradients():
    args = _args(n=0)
    out, grads = _grads(args)
    assert out.shape == (0, 32, 5, 7)
    assert all(g.abs().sum() == 0 for g in grads[2:])


def test_nan_in_mixed_reaches_the_output_like_the_reference():
    args = _args()
    args[1][0, 5, 1, 2, 3] = float("nan")
    out = tdn_ops.project_excite_shift(*args, backend="cpu")
    ref = tdn_ops.project_excite_shift(*args, backend="reference")
    assert torch.equal(out.isnan(), ref.isnan()) and out.isnan().any()


@pytest.mark.parametrize("position,value,match", [
    (0, torch.randn(8, 32, 5), "x must be a 4-D"),
    (1, torch.randn(2, 8, 3, 5, 7), r"mixed must have shape \(2, N\*T, c, H, W\)"),
    (1, torch.randn(8, 2, 5, 7), "mixed must be a 5-D"),
    (2, torch.randn(16, 2), r"weight must have shape \(C, c\) with C=32"),
    (3, torch.randn(32), "scale must be a 2-D"),
    (4, torch.randn(1, 32), r"bias must have shape \(2, C\)"),
    (5, torch.randn(32, 3), "shift_weight must be a 3-D"),
    (5, torch.randn(16, 1, 3), r"shift_weight must have shape \(C, 1, 3\)"),
    (6, 3, r"x.shape\[0\] \(8\) must be N\*T, a multiple of num_segments \(3\)"),
    (6, 0, "num_segments must be >= 1"),
    (2, torch.randn(32, 2, dtype=torch.float64), "weight has dtype torch.float64"),
])
def test_bad_arguments_name_the_argument(position, value, match):
    args = _args()
    args[position] = value
    with pytest.raises((ValueError, TypeError), match=match):
        tdn_ops.project_excite_shift(*args)


def test_native_entry_point_checks_too():
    args = _args()
    args[3] = torch.randn(2, 16)
    with pytest.raises(RuntimeError, match=r"scale must have shape \(2, C\)"):
        torch.ops.tdn_ops.project_excite_shift(*args)


def test_autocast_runs_in_bfloat16():
    args = _args()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tdn_ops.project_excite_shift(*args)
    assert out.dtype == torch.bfloat16
    ref = tdn_ops.project_excite_shift(*args, backend="reference")
    assert (out.float() - ref).norm() / ref.norm() < 3e-2


def test_opcheck():
    args = _args(dtype=torch.float64)
    torch.library.opcheck(torch.ops.tdn_ops.project_excite_shift.default, _with_grad(args))
    channels_last = _args(dtype=torch.float64, channels_last=True)
    torch.library.opcheck(torch.ops.tdn_ops.project_excite_shift.default,
                          _with_grad(channels_last))


def test_torch_compile_fullgraph_forward_and_backward():
    args = _with_grad(_args())

    def step(x, mixed, weight, scale, bias, shift_weight):
        out = tdn_ops.project_excite_shift(x, mixed, weight, scale, bias, shift_weight, 4)
        return (out * out).sum()

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    loss = compiled(*args[:6])
    loss.backward()
    eager = _with_grad(args)
    expected = step(*eager[:6])
    expected.backward()
    torch.testing.assert_close(loss, expected)
    for a, b in zip(args[:6], eager[:6]):
        torch.testing.assert_close(a.grad, b.grad)


def test_loop_fallback_matches_the_reference():
    """Without MKL (forced by TDN_OPS_NO_MKL=1) the kernels take their vectorised loops; they
    must compute the same as the reference, in both layouts."""
    script = textwrap.dedent("""
        import torch, tdn_ops
        from test_project_excite_shift import _args, _grads
        for channels_last in (False, True):
            args = _args(dtype=torch.float64, channels_last=channels_last)
            out, grads = _grads(args)
            ref_out, ref_grads = _grads(args, backend="reference")
            assert torch.allclose(out, ref_out, rtol=1e-10, atol=1e-12)
            for g, r in zip(grads, ref_grads):
                assert torch.allclose(g, r, rtol=1e-10, atol=1e-12)
        print("ok")
    """)
    env = dict(os.environ, TDN_OPS_NO_MKL="1")
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__)] + sys.path)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_frames_larger_than_a_forward_tile(dtype, channels_last):
    """Frames of more than one forward tile (37x31 pixels: two contiguous pixel runs) and
    channel blocks that do not divide C (40 = 16 + 16 + 8): every tile of every frame is
    computed, each once, in forward and backward."""
    args = _args(n=2, t=3, channels=40, mid=3, h=37, w=31, dtype=dtype,
                 channels_last=channels_last)
    out, grads = _grads(args)
    ref_out, ref_grads = _grads(args, backend="reference")
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out, ref_out, **tol)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, **tol)


# Float channels_last tiles on an AVX2 or AVX-512 CPU project in registers, four vectors of
# channels at a time (32 or 64) and then one (8 or 16): C = 128, 80 = 64 + 16 (AVX2: 2 x 32 +
# 2 x 8), 48, 40 (AVX2: 32 + 8; AVX-512: not whole vectors, the gemm), 24 (AVX2 only), 20 (the
# gemm on both); `mixed` dense or laid out as the L-TDM makes it (channels last per frame).
# Whichever path runs, the forward equals the float64 reference to float rounding.
@pytest.mark.parametrize("channels,mid", [(128, 8), (80, 5), (48, 3), (40, 4), (24, 3), (20, 2)])
@pytest.mark.parametrize("mixed_layout", ["dense", "frames_channels_last"])
def test_channels_last_float_forward_matches_the_reference(channels, mid, mixed_layout):
    x, mixed, weight, scale, bias, shift_weight, t = _args(
        n=1, t=4, channels=channels, mid=mid, h=5, w=6, channels_last=True)
    if mixed_layout == "dense":
        mixed = mixed.contiguous()
    with torch.no_grad():
        got = tdn_ops.project_excite_shift(x, mixed, weight, scale, bias, shift_weight, t,
                                           backend="cpu")
        want = reference.project_excite_shift(
            *(a.double() for a in (x, mixed, weight, scale, bias, shift_weight)), t)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got.double(), want, rtol=2e-5, atol=2e-5)


# Logits far below zero (common in deep layers) make sigmoid's true value subnormal; the
# kernels cap exp's argument there (cpu_kernels.h, sigmoid_acc) so that no subnormal reaches
# the arithmetic. The outputs and every gradient still equal the reference, on the register
# path (channels_last, whole vectors of channels) and on the others; a NaN logit still gives
# NaN.
@pytest.mark.parametrize("channels_last,channels", [(True, 32), (True, 40), (False, 32)])
def test_very_negative_and_nan_logits_match_the_reference(channels_last, channels):
    args = _args(n=1, t=4, channels=channels, mid=2, channels_last=channels_last)
    # bias[d] in -120..-60: sigmoid 1e-52..1e-26, both sides of float32's subnormal range.
    args[4] = torch.linspace(-120.0, -60.0, 2 * channels).reshape(2, channels)
    got, got_grads = _grads(args)
    want, want_grads = _grads([a.double() if isinstance(a, torch.Tensor) else a for a in args],
                              backend="reference")
    torch.testing.assert_close(got.double(), want, rtol=2e-5, atol=2e-5)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g.double(), w, rtol=2e-5, atol=2e-5)
    nan_args = list(args)
    nan_args[1] = args[1].clone()
    nan_args[1][0, 1, :, 2, 3] = float("nan")    # one pixel of frame 1's forward mixture
    with torch.no_grad():
        out = tdn_ops.project_excite_shift(*nan_args, backend="cpu")
        ref = reference.project_excite_shift(*nan_args)
    assert torch.equal(out.isnan(), ref.isnan()) and out.isnan().any()
