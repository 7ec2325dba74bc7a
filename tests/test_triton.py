"""The Triton kernels (tdn_ops/triton) against the plain-PyTorch references.

Without a CUDA device the kernels run on CPU tensors under Triton's interpreter
(``TRITON_INTERPRET=1``, set below before Triton is imported), so CI checks every forward and
backward kernel on small shapes: float32 and float16, contiguous, channels_last and strided
inputs, odd H/W, T in {1, 2, 3, 8, 16}; outputs and the gradient of every tensor input against
the reference run in float64 on the same (rounded) inputs. With a CUDA device the same tests run
the compiled kernels on it (plus bfloat16), and the GPU-only tests at the end check the
``torch.library.triton_op`` registration: opcheck and torch.compile(fullgraph=True).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

# Without CUDA, interpret. The variable must be set when triton (and tdn_ops.triton) is first
# imported: triton.jit decides at decoration time whether a kernel is compiled or interpreted.
# It is removed again right after, so that it does not leak into other test modules of this
# process (it makes backend="triton" available on CPU); the `interpreter_env` fixture sets it
# again for each test here.
_SETS_INTERPRET = not torch.cuda.is_available() and "TRITON_INTERPRET" not in os.environ
if _SETS_INTERPRET:
    os.environ["TRITON_INTERPRET"] = "1"
try:
    pytest.importorskip("triton", reason="Triton is not installed: the Triton backend is untested")
    import tdn_ops.triton as tdn_triton
finally:
    if _SETS_INTERPRET:
        del os.environ["TRITON_INTERPRET"]

import tdn_ops  # noqa: E402
from op_cases import (Case, as_tuple, cases_for, make_args, reference_op,  # noqa: E402
                      tensor_positions, with_grad)
from tdn_ops.triton import _common  # noqa: E402

if not tdn_triton.AVAILABLE:
    pytest.skip(f"tdn_ops.triton is unavailable: {tdn_triton.IMPORT_ERROR}",
                allow_module_level=True)
if not tdn_triton.INTERPRET and not torch.cuda.is_available():
    pytest.skip("tdn_ops.triton was imported without TRITON_INTERPRET=1 before this module and "
                "there is no CUDA device: run this file on its own, or set TRITON_INTERPRET=1",
                allow_module_level=True)

INTERPRETED = tdn_triton.INTERPRET
DEVICE = "cpu" if INTERPRETED else "cuda"
DTYPES = (torch.float32, torch.float16) + (() if INTERPRETED else (torch.bfloat16,))
# Elementwise tolerances against float64: float32 accumulates like the reference; half types
# round once on store (half an ulp: 2**-11 relative for float16, 2**-8 for bfloat16).
TOLERANCE = {
    torch.float32: dict(atol=1e-5, rtol=1e-5),
    torch.float16: dict(atol=2e-3, rtol=2e-3),
    torch.bfloat16: dict(atol=1.6e-2, rtol=1.6e-2),
    torch.float64: dict(atol=1e-9, rtol=1e-6),  # coefficients (1/3, alpha, beta) are float32
}
REPO = Path(__file__).resolve().parents[1]

needs_gpu = pytest.mark.skipif(
    INTERPRETED or not torch.cuda.is_available(),
    reason="needs a CUDA device with compiled (not interpreted) Triton kernels: triton_op "
           "and torch.compile cannot run under TRITON_INTERPRET=1 on a CPU-only machine")


@pytest.fixture(autouse=True)
def interpreter_env(monkeypatch):
    """TRITON_INTERPRET=1 during each test when the kernels are interpreted: the dispatcher
    offers backend="triton" for CPU tensors only then."""
    if INTERPRETED:
        monkeypatch.setenv("TRITON_INTERPRET", "1")


# -------------------------------------------------------------------------------- harness

def triton_fn(op):
    return lambda args: as_tuple(getattr(tdn_triton, op)(*args))


def forward_backward(fn, args, seed=1, grad_dtype=None):
    """Outputs and every tensor argument's gradient for a fixed random upstream gradient.

    The upstream gradient is drawn in float64 and rounded to ``grad_dtype`` (default: each
    output's dtype), so the float64 reference can be given the very same values.
    """
    args = with_grad(args)
    outs = fn(args)
    g = torch.Generator().manual_seed(seed)
    grads_out = [torch.randn(o.shape, generator=g, dtype=torch.float64)
                 .to(grad_dtype or o.dtype).to(o.device, o.dtype) for o in outs]
    torch.autograd.backward(outs, grads_out)
    return outs, [args[i].grad for i in tensor_positions(args)]


def reference_float64(op, args, seed=1):
    """The reference in float64 on the CPU, from the same (rounded) inputs and upstream grads."""
    dtype = next(a.dtype for a in args if isinstance(a, torch.Tensor))
    ref_args = [a.detach().cpu().double() if isinstance(a, torch.Tensor) else a for a in args]
    return forward_backward(lambda a: as_tuple(reference_op(op)(*a)), ref_args, seed, dtype)


def assert_close(actual, expected, dtype, what):
    assert actual is not None, f"{what}: no gradient"
    assert actual.dtype == dtype and actual.shape == expected.shape, what
    torch.testing.assert_close(actual.detach().cpu().double(), expected, **TOLERANCE[dtype],
                               msg=lambda m: f"{what}: {m}")


def check_against_reference(op, args, dtype):
    outs, grads = forward_backward(triton_fn(op), args)
    ref_outs, ref_grads = reference_float64(op, args)
    for i, (o, r) in enumerate(zip(outs, ref_outs)):
        assert_close(o, r, dtype, f"{op} output {i}")
    for i, (g, r) in zip(tensor_positions(args), zip(grads, ref_grads)):
        assert_close(g, r, dtype, f"{op} gradient of argument {i}")
    return outs


def is_channels_last(t: torch.Tensor) -> bool:
    """Channels-last per (…, c, H, W) block (5-D outputs hold two 4-D halves)."""
    t4 = t.reshape((-1,) + tuple(t.shape[-3:])) if t.dim() > 4 else t
    return t4.is_contiguous(memory_format=torch.channels_last)


def case_params(dtypes, layouts):
    return [pytest.param(c, d, lay, id=f"{c}-{str(d)[6:]}-{lay}")
            for c in cases_for() for d in dtypes for lay in layouts]


# ---------------------------------------------------------------- values and gradients

@pytest.mark.parametrize(
    "case,dtype,layout",
    case_params(DTYPES, ("contiguous", "channels_last")) + case_params((torch.float32,),
                                                                       ("strided",)))
def test_matches_reference(case, dtype, layout):
    args = make_args(case, dtype, device=DEVICE, layout=layout)
    outs = check_against_reference(case.op, args, dtype)
    primary = args[0]
    if layout == "channels_last" and is_channels_last(primary) and not primary.is_contiguous():
        assert is_channels_last(outs[0]), "output must take the input's channels_last layout"
    elif layout == "contiguous":
        assert outs[0].is_contiguous()


@pytest.mark.parametrize("op", ["temporal_diff_pool", "cross_segment_diff", "excite_shift",
                                "lateral_fuse"])
def test_float64_computes_in_float64(op):
    case = cases_for(op)[1]
    check_against_reference(op, make_args(case, torch.float64, device=DEVICE), torch.float64)


def test_int64_indexing_path(monkeypatch):
    """Every kernel's int64 index path (taken past 2**30 elements), forced on small shapes."""
    monkeypatch.setattr(_common, "_INT32_SAFE_REACH", 0)
    for op in tdn_triton.OPERATORS:
        case = cases_for(op)[1]
        check_against_reference(op, make_args(case, torch.float32, device=DEVICE,
                                              layout="channels_last"), torch.float32)


def test_int64_decision():
    small = torch.empty(4, 4)
    assert not _common.needs_int64(small)
    assert _common.needs_int64(torch.empty(1).expand(2**31))  # numel alone, no memory behind
    far = torch.empty_strided((2, 1), (2**31, 1), device="meta")  # reach, not numel
    assert far.numel() == 2 and _common.needs_int64(far)


@pytest.mark.parametrize("op", tdn_triton.OPERATORS)
def test_expanded_upstream_gradient(op):
    """``out.sum().backward()`` hands the kernels a stride-0 gradient."""
    args = make_args(cases_for(op)[0], torch.float32, device=DEVICE)
    fused, ref = with_grad(args), with_grad([a.double() if isinstance(a, torch.Tensor) else a
                                             for a in args])
    sum(o.sum() for o in as_tuple(getattr(tdn_triton, op)(*fused))).backward()
    sum(o.sum() for o in as_tuple(reference_op(op)(*ref))).backward()
    for i in tensor_positions(args):
        assert_close(fused[i].grad, ref[i].grad, torch.float32, f"{op} gradient {i}")


def test_cross_segment_diff_one_output_used():
    args = with_grad(make_args(cases_for("cross_segment_diff")[1], device=DEVICE,
                               dtype=torch.float32))
    ref = with_grad([a.double() if isinstance(a, torch.Tensor) else a for a in args])
    tdn_triton.cross_segment_diff(*args)[1].square().sum().backward()
    reference_op("cross_segment_diff")(*ref)[1].square().sum().backward()
    for i in (0, 1):
        assert_close(args[i].grad, ref[i].grad, torch.float32, f"gradient {i}")


@pytest.mark.parametrize("op", ["temporal_shift_conv", "excite_shift"])
def test_weight_gradient_is_deterministic(op):
    args = make_args(Case(op, (2, 8, 16, 7, 7)), torch.float32, device=DEVICE)
    grads = []
    for _ in range(2):
        fused = with_grad(args)
        out = getattr(tdn_triton, op)(*fused)
        out.backward(torch.ones_like(out))
        grads.append(fused[-2].grad)
    assert torch.equal(grads[0], grads[1])


@pytest.mark.parametrize("op", tdn_triton.OPERATORS)
def test_empty_batch(op):
    case = cases_for(op)[0]
    args = make_args(case, torch.float32, device=DEVICE)
    empty = [a[:0] if isinstance(a, torch.Tensor) and a.dim() >= 4 else a for a in args]
    if op == "multiscale_sum":
        empty = [a[:, :0] for a in args]
    fused = with_grad(empty)
    outs = as_tuple(getattr(tdn_triton, op)(*fused))
    ref = as_tuple(reference_op(op)(*empty))
    assert [o.shape for o in outs] == [r.shape for r in ref]
    sum(o.sum() for o in outs).backward()
    for i in tensor_positions(fused):
        assert fused[i].grad is not None and fused[i].grad.shape == fused[i].shape
        assert not fused[i].grad.any()  # the weight's gradient is an empty sum: zero


@pytest.mark.parametrize("op", tdn_triton.OPERATORS)
def test_nan_propagates_like_the_reference(op):
    args = make_args(cases_for(op)[0], torch.float32, device=DEVICE)
    args[0] = args[0].clone()
    args[0].view(-1)[3] = float("nan")
    outs = as_tuple(getattr(tdn_triton, op)(*args))
    ref = as_tuple(reference_op(op)(*args))
    for o, r in zip(outs, ref):
        assert r.isnan().any()
        assert torch.equal(o.isnan().cpu(), r.isnan().cpu())


def test_nearest_index_map_matches_interpolate():
    """The host emulation of the kernels' nearest-source index equals F.interpolate's."""
    from tdn_ops.triton._upsample import _axis_plan, _nearest_src

    for in_size in range(1, 30):
        for out_size in range(1, 70):
            src = torch.arange(in_size, dtype=torch.float32).view(1, 1, 1, -1)
            expected = torch.nn.functional.interpolate(src, size=(1, out_size), mode="nearest")
            plan = _axis_plan(in_size, out_size)
            got = [_nearest_src(d, in_size, out_size, plan.scale) for d in range(out_size)]
            assert got == expected.flatten().long().tolist(), (in_size, out_size)


# --------------------------------------------------------------------- through the public API

@pytest.mark.parametrize("op", tdn_triton.OPERATORS)
def test_public_api_backend_triton(op, monkeypatch):
    calls = []
    kernel_op = getattr(tdn_triton, op)
    monkeypatch.setattr(tdn_triton, op, lambda *a: calls.append(op) or kernel_op(*a))
    args = make_args(cases_for(op)[0], torch.float32, device=DEVICE)
    expected = as_tuple(reference_op(op)(*args))

    got = as_tuple(getattr(tdn_ops, op)(*args, backend="triton"))
    assert calls == [op]
    for o, r in zip(got, expected):
        torch.testing.assert_close(o, r, **TOLERANCE[torch.float32])

    monkeypatch.setenv("TDN_OPS_BACKEND", "triton")  # a preference for backend="auto"
    as_tuple(getattr(tdn_ops, op)(*args))
    assert calls == [op, op]


def _run_python(code: str, env_updates: dict[str, str | None]) -> str:
    env = dict(os.environ)
    for key, value in env_updates.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def test_import_without_triton_falls_back():
    out = _run_python("""
        import sys
        sys.modules["triton"] = None  # import triton -> ImportError
        import torch, tdn_ops, tdn_ops.triton
        from tdn_ops._dispatch import triton_available
        assert not tdn_ops.triton.AVAILABLE and "triton" in tdn_ops.triton.IMPORT_ERROR
        assert not triton_available(torch.device("cpu"))
        x = torch.randn(2, 3, 4, 4)
        tdn_ops.bidirectional_excitation(x, x, x)
        try:
            tdn_ops.bidirectional_excitation(x, x, x, backend="triton")
        except RuntimeError as exc:
            print("refused:", exc)
    """, {"TRITON_INTERPRET": "1"})
    assert "refused:" in out


def test_custom_ops_trace_with_fake_tensors():
    """The triton_op bodies (the launchers) run on fake tensors, as torch.compile runs them to
    learn output shapes: no data access, outputs with the right shapes and layouts. Checked
    here on the meta device (a CPU-only torch cannot even make views of fake CUDA tensors)."""
    out = _run_python("""
        import torch
        import tdn_ops.triton as tt
        from tdn_ops.triton import _wiring
        from torch._subclasses.fake_tensor import FakeTensorMode
        assert _wiring.REGISTRATION_ERROR is None, _wiring.REGISTRATION_ERROR
        ops = torch.ops.tdn_ops_triton
        cl = torch.channels_last
        with FakeTensorMode():
            x = torch.empty(16, 64, 7, 9, device="meta", memory_format=cl)
            w = torch.empty(64, 1, 3, device="meta")
            small = torch.empty(16, 64, 3, 4, device="meta", memory_format=cl)
            diff_pooled = ops.cross_segment_diff(x, x, 8)
            results = {
                "temporal_diff_pool": ops.temporal_diff_pool(x, 4, 2),
                "temporal_diff_pool_backward": ops.temporal_diff_pool_backward(
                    ops.temporal_diff_pool(x, 4, 2), 4, 2, 7, 9),
                "cross_segment_diff": diff_pooled,
                "cross_segment_diff_backward": ops.cross_segment_diff_backward(*diff_pooled, 8),
                "multiscale_sum": ops.multiscale_sum(x, small, x),
                "multiscale_sum_backward": ops.multiscale_sum_backward(x, 3, 4),
                "bidirectional_excitation": ops.bidirectional_excitation(x, x, x),
                "bidirectional_excitation_backward":
                    ops.bidirectional_excitation_backward(x, x, x, x),
                "temporal_shift_conv": ops.temporal_shift_conv(x, w, 8),
                "temporal_shift_conv_backward": ops.temporal_shift_conv_backward(x, x, w, 8),
                "excite_shift": ops.excite_shift(x, x, x, w, 8),
                "excite_shift_backward": ops.excite_shift_backward(x, x, x, x, w, 8),
                "lateral_fuse": ops.lateral_fuse(x, small, 0.5, 0.5),
                "lateral_fuse_backward": ops.lateral_fuse_backward(x, 3, 4, 0.5, 0.5),
            }
            for name, outs in results.items():
                for t in outs if isinstance(outs, tuple) else (outs,):
                    assert t.device.type == "meta", name
                    if t.dim() == 5:  # two channels_last halves
                        _, b, c, h, w_ = t.shape
                        assert t.stride() == (b * h * w_ * c, h * w_ * c, 1, w_ * c, c), name
                    elif t.dim() == 4:
                        assert t.is_contiguous(memory_format=cl), (name, t.stride())
                    else:  # the weight gradient
                        assert t.shape == w.shape and t.is_contiguous(), name
        print("traced", len(results))
    """, {"TRITON_INTERPRET": None})
    assert "traced 14" in out


def test_kernels_compile_for_sm90():
    """Compiled mode (not the interpreter) accepts every kernel: Triton compiles them to
    cubin for sm_90 without a GPU. Catches what the interpreter lets through."""
    out = _run_python("""
        from tdn_ops.triton._compile_check import compile_all
        print("compiled", compile_all(90))
    """, {"TRITON_INTERPRET": None})
    assert "compiled 24" in out


# ---------------------------------------------------------------------------- GPU only

def _gpu_args(op, dtype=torch.float32, layout="channels_last"):
    return make_args(cases_for(op)[0], dtype, device="cuda", layout=layout)


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("op", tdn_triton.OPERATORS)
def test_opcheck(op):
    args = _gpu_args(op)
    torch.library.opcheck(getattr(torch.ops.tdn_ops_triton, op).default, tuple(args))


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("op", tdn_triton.OPERATORS)
def test_torch_compile_fullgraph(op):
    """torch.compile traces through the triton_op (no graph break), forward and backward."""
    torch._dynamo.reset()
    args = _gpu_args(op)
    compiled = torch.compile(lambda *a: getattr(tdn_triton, op)(*a), fullgraph=True)
    outs, grads = forward_backward(lambda a: as_tuple(compiled(*a)), args)
    ref_outs, ref_grads = reference_float64(op, args)
    for i, (o, r) in enumerate(zip(outs, ref_outs)):
        assert_close(o, r, torch.float32, f"compiled {op} output {i}")
    for i, (g, r) in enumerate(zip(grads, ref_grads)):
        assert_close(g, r, torch.float32, f"compiled {op} gradient {i}")


@needs_gpu
@pytest.mark.gpu
def test_torch_compile_public_api_backend_triton():
    """The public function with backend="triton" compiles without graph breaks too."""
    torch._dynamo.reset()
    args = _gpu_args("excite_shift", torch.float16)
    compiled = torch.compile(lambda *a: tdn_ops.excite_shift(*a, backend="triton"),
                             fullgraph=True)
    outs, grads = forward_backward(lambda a: as_tuple(compiled(*a)), args)
    ref_outs, ref_grads = reference_float64("excite_shift", args)
    for o, r in zip(outs + grads, ref_outs + ref_grads):
        assert_close(o, r, torch.float16, "compiled excite_shift")


@needs_gpu
@pytest.mark.gpu
def test_past_two_to_the_31_elements():
    """temporal_shift_conv forward and backward (the tiled weight-gradient kernel) on a tensor
    of more than 2**31 elements: the last video, whose offsets pass 2**31, against the
    reference (32-bit offsets would wrap and read or write the wrong place)."""
    n, t, c, h, w = 2, 8, 1032, 512, 256  # 2_164_260_864 elements
    numel = n * t * c * h * w
    free, _ = torch.cuda.mem_get_info()
    if free < 8 * numel * 2:  # x, out, their gradients, float32 copies of the last video
        pytest.skip(f"needs {8 * numel * 2 / 2**30:.0f} GiB of free GPU memory")
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn((n * t, c, h, w), generator=g, device="cuda", dtype=torch.float16)
    weight = torch.randn((c, 1, 3), generator=g, device="cuda", dtype=torch.float16)
    x.requires_grad_()
    out = tdn_triton.temporal_shift_conv(x, weight, t)
    grad_out = torch.randn(out.shape, generator=g, device="cuda", dtype=torch.float16)
    out.backward(grad_out)
    tail = slice((n - 1) * t, n * t)
    x_tail = x.detach()[tail].float().requires_grad_()
    ref = reference_op("temporal_shift_conv")(x_tail, weight.float(), t)
    ref.backward(grad_out[tail].float())
    torch.testing.assert_close(out[tail].float(), ref, **TOLERANCE[torch.float16])
    torch.testing.assert_close(x.grad[tail].float(), x_tail.grad, **TOLERANCE[torch.float16])
