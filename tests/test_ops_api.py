"""The operators as PyTorch sees them: opcheck, torch.compile, export, autocast, dispatch, and
every misuse listed in docs/math.md §6 failing with a message that names the argument.

Tests of one behaviour on several backends take the target (tests/op_targets.py) as a
parameter; GPU targets skip with the reason on a machine without one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import tdn_ops
import tdn_ops.triton as tdn_triton
from op_cases import (TOLERANCE, as_tuple, cases_for, first_case_of_each_operator, make_args,
                      public_op, reference_op, with_grad)
from op_targets import (CUDA, GPU_TARGETS, NATIVE_TARGETS, TRITON_CUDA, TRITON_INTERPRET,
                        assert_close_to_reference, forward_backward, reference_float64, run_op,
                        target_params)
from tdn_ops._dispatch import resolve_backend

REPO = Path(__file__).resolve().parents[1]
native = pytest.mark.skipif(not tdn_ops.NATIVE_AVAILABLE,
                            reason="tdn_ops._C is not built: the CPU kernels are missing")
TRITON_TARGETS = (TRITON_INTERPRET, TRITON_CUDA)


# --------------------------------------------------------------------------------------------
# torch.library.opcheck: schema, fake kernels, autograd registration, AOT dispatch


def _backward_args(case, args):
    """Arguments of the matching *_backward operator, from one forward run."""
    op = case.op
    outs = as_tuple(getattr(torch.ops.tdn_ops, op)(*args))
    grads = [torch.randn_like(o) for o in outs]
    if op == "temporal_diff_pool":
        return [grads[0], args[1], args[2], args[0].shape[2], args[0].shape[3]]
    if op == "cross_segment_diff":
        return [grads[0], grads[1], args[2]]
    if op == "multiscale_sum":
        return [grads[0], args[1].shape[-2], args[1].shape[-1]]
    if op == "lateral_fuse":
        return [grads[0], args[1].shape[-2], args[1].shape[-1], args[2], args[3]]
    return [grads[0]] + list(args)


def _opcheck_params(target):
    return [(case, lay) for case in first_case_of_each_operator()
            for lay in ("contiguous", "channels_last")]


@pytest.mark.parametrize("target,case,layout",
                         target_params(NATIVE_TARGETS + (TRITON_CUDA,), _opcheck_params))
def test_opcheck(target, case, layout):
    """The native operators (forward and backward) and, on CUDA, the Triton ``triton_op``s
    (forward, with its registered autograd). Under the interpreter a triton_op cannot run."""
    args = with_grad(make_args(case, torch.float32, device=target.device, layout=layout))
    if target.backend == "triton":
        torch.library.opcheck(getattr(torch.ops.tdn_ops_triton, case.op).default, tuple(args))
        return
    torch.library.opcheck(getattr(torch.ops.tdn_ops, case.op).default, args)
    plain = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
    backward = getattr(torch.ops.tdn_ops, case.op + "_backward").default
    torch.library.opcheck(backward, _backward_args(case, plain))


@native
@pytest.mark.parametrize("name", [op + suffix for op in tdn_ops.OPERATORS
                                  for suffix in ("", "_backward")])
def test_operators_take_any_layout_under_inductor(name):
    # Without the tag Inductor converts its channels_last maps to the traced strides before
    # every call and back after it (needs_exact_strides, the custom-operator default); the
    # fake kernels follow the input's layout like the kernels (opcheck above, both layouts).
    op = getattr(torch.ops.tdn_ops, name).default
    assert torch.Tag.flexible_layout in op.tags


# --------------------------------------------------------------------------------------------
# torch.compile(fullgraph=True) and torch.export


class TinyTDNBlock(torch.nn.Module):
    """Every operator once, wired as in TDN, small enough to compile quickly."""

    def __init__(self, c=8, t=4, backend="auto"):
        super().__init__()
        self.t = t
        self.backend = backend
        self.weight = torch.nn.Parameter(torch.randn(c, 1, 3))
        self.conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.projection = torch.nn.Parameter(torch.randn(c, c) / c**0.5)
        self.scale = torch.nn.Parameter(1 + 0.1 * torch.randn(2, c))
        self.bias = torch.nn.Parameter(0.1 * torch.randn(2, c))

    def forward(self, clip, x):
        b = self.backend
        motion = tdn_ops.temporal_diff_pool(clip, 5, 2, backend=b)      # (NT, 4c', H/2, W/2)
        x = tdn_ops.lateral_fuse(x, motion[:, : x.shape[1]], 0.5, 0.5, backend=b)
        diff, pooled = tdn_ops.cross_segment_diff(x, self.conv(x), self.t, backend=b)
        m = tdn_ops.multiscale_sum(diff, pooled, diff, backend=b)
        y = tdn_ops.bidirectional_excitation(x, m[0], m[1], backend=b)
        y = tdn_ops.temporal_shift_conv(y, self.weight, self.t, backend=b)
        y = tdn_ops.excite_shift(y, m[0], m[1], self.weight, self.t, backend=b)
        return tdn_ops.project_excite_shift(y, m, self.projection, self.scale, self.bias,
                                            self.weight, self.t, backend=b)


def _tiny_inputs(device="cpu"):
    torch.manual_seed(0)
    return torch.randn(8, 40, 12, 12, device=device), torch.randn(8, 8, 12, 12, device=device)


@pytest.mark.parametrize("target", target_params(NATIVE_TARGETS + (TRITON_CUDA,)))
def test_compile_fullgraph_matches_eager(target):
    """Every operator once, in one block: torch.compile traces them all without a graph
    break, forward and backward."""
    torch._dynamo.reset()
    torch.manual_seed(0)  # the block's parameters: the same whatever ran before
    block = TinyTDNBlock(backend=target.backend).to(target.device)
    clip, x = _tiny_inputs(target.device)
    compiled = torch.compile(block, fullgraph=True, backend="inductor")
    x_eager, x_comp = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager = block(clip, x_eager)
    out = compiled(clip, x_comp)
    torch.testing.assert_close(out, eager)
    eager.square().sum().backward()
    out.square().sum().backward()
    # Inductor fuses and reorders the float32 arithmetic around the operators (and in the
    # convolution's backward): gradients agree to float32 rounding of a chain of ~10 ops.
    torch.testing.assert_close(x_comp.grad, x_eager.grad, rtol=1e-4, atol=1e-4)


def _per_op_compile_params(target):
    """Every operator in float32; excite_shift in float16 too."""
    return [(op, torch.float32) for op in tdn_ops.OPERATORS] + [("excite_shift", torch.float16)]


@pytest.mark.parametrize("target,op,dtype", target_params(GPU_TARGETS, _per_op_compile_params))
def test_torch_compile_fullgraph_per_operator(target, op, dtype):
    """Each public operator compiles without graph breaks on the GPU backends (through the
    triton_op for Triton), forward and backward, and matches the reference."""
    torch._dynamo.reset()
    args = make_args(cases_for(op)[0], dtype, device=target.device, layout="channels_last")
    compiled = torch.compile(lambda *a: public_op(op)(*a, backend=target.backend),
                             fullgraph=True)
    outs, grads = forward_backward(lambda a: as_tuple(compiled(*a)), args)
    ref_outs, ref_grads = reference_float64(op, args)
    for i, (o, r) in enumerate(zip(outs + grads, ref_outs + ref_grads, strict=True)):
        assert_close_to_reference(o, r, dtype, target.device, f"compiled {op} result {i}")


@pytest.mark.parametrize("target", target_params(NATIVE_TARGETS))
def test_export_traces_the_operators(target):
    block = TinyTDNBlock().to(target.device)
    clip, x = _tiny_inputs(target.device)
    exported = torch.export.export(block, (clip, x))
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert {f"tdn_ops.{op}.default" for op in tdn_ops.OPERATORS} <= targets
    torch.testing.assert_close(exported.module()(clip, x), block(clip, x))


# --------------------------------------------------------------------------------------------
# autocast: every floating input is cast to the autocast dtype (documented in README)


@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=native), "reference"])
@pytest.mark.parametrize("case", first_case_of_each_operator(), ids=str)
def test_autocast_bf16_runs_in_bf16(case, backend):
    args = with_grad(make_args(case, torch.float32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outs = as_tuple(public_op(case.op)(*args, backend=backend))
    assert all(o.dtype == torch.bfloat16 for o in outs)
    expected = as_tuple(reference_op(case.op)(*[
        a.detach().to(torch.bfloat16).double() if isinstance(a, torch.Tensor) else a
        for a in args]))
    for o, e in zip(outs, expected, strict=True):
        torch.testing.assert_close(o.double(), e, atol=5e-2, rtol=2e-2)
    torch.autograd.backward([o.float().sum() for o in outs])
    for a in args:
        if isinstance(a, torch.Tensor):  # gradients come back in the inputs' float32
            assert a.grad is not None and a.grad.dtype == torch.float32


@native
def test_mixed_dtypes_outside_autocast_fail():
    x = torch.randn(4, 8, 5, 5)
    with pytest.raises(TypeError, match="y_fwd has dtype torch.bfloat16 but x has dtype"):
        tdn_ops.bidirectional_excitation(x, x.bfloat16(), x)


# --------------------------------------------------------------------------------------------
# backend dispatch


@native
def test_auto_backend_uses_cpu_kernels(monkeypatch):
    monkeypatch.delenv("TDN_OPS_BACKEND", raising=False)
    assert resolve_backend("excite_shift", "auto", torch.device("cpu")) == "cpu"
    assert "cpu" in tdn_ops.available_backends("cpu")


def _auto_on_cpu() -> str:
    """What ``"auto"`` resolves to on CPU tensors without a preference: the C++ kernels when
    they are built, else the reference."""
    return "cpu" if tdn_ops.NATIVE_AVAILABLE else "reference"


@pytest.mark.parametrize("interpret", [False, True], ids=["compiled-triton", "interpreter"])
def test_env_variable_prefers_a_backend(monkeypatch, interpret):
    """TDN_OPS_BACKEND is a preference for "auto": taken where the backend can run, else
    "auto" decides; an unknown name is an error naming the variable."""
    cpu = torch.device("cpu")
    if interpret:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    else:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    # Triton runs CPU tensors only under its interpreter, and only when tdn_ops.triton is
    # importable and was imported in interpreter mode (tests/conftest.py sees to that).
    triton_runs_on_cpu = interpret and tdn_triton.AVAILABLE and tdn_triton.INTERPRET
    monkeypatch.setenv("TDN_OPS_BACKEND", "reference")
    assert resolve_backend("excite_shift", "auto", cpu) == "reference"
    monkeypatch.setenv("TDN_OPS_BACKEND", "cuda")  # never runs CPU tensors: auto decides
    assert resolve_backend("excite_shift", "auto", cpu) == _auto_on_cpu()
    monkeypatch.setenv("TDN_OPS_BACKEND", "triton")
    expected = "triton" if triton_runs_on_cpu else _auto_on_cpu()
    assert resolve_backend("excite_shift", "auto", cpu) == expected
    assert resolve_backend("excite_shift", "reference", cpu) == "reference"  # a demand wins
    monkeypatch.setenv("TDN_OPS_BACKEND", "")
    assert resolve_backend("excite_shift", "auto", cpu) == _auto_on_cpu()
    monkeypatch.setenv("TDN_OPS_BACKEND", "bogus")
    with pytest.raises(ValueError, match="TDN_OPS_BACKEND"):
        resolve_backend("excite_shift", "auto", cpu)


@pytest.mark.parametrize("target,op", target_params(TRITON_TARGETS, lambda t: tdn_ops.OPERATORS))
def test_public_api_backend_triton(target, op, monkeypatch):
    """backend="triton" and TDN_OPS_BACKEND=triton both reach tdn_ops.triton.<op>."""
    calls = []
    kernel_op = getattr(tdn_triton, op)
    monkeypatch.setattr(tdn_triton, op, lambda *a: calls.append(op) or kernel_op(*a))
    args = make_args(cases_for(op)[0], torch.float32, device=target.device)
    expected = as_tuple(reference_op(op)(*[a.cpu() if isinstance(a, torch.Tensor) else a
                                           for a in args]))
    got = run_op(target, op, args)
    assert calls == [op]
    tol = TOLERANCE[torch.float32]
    for o, r in zip(got, expected, strict=True):
        torch.testing.assert_close(o.cpu(), r, atol=tol.atol, rtol=tol.rtol)
    monkeypatch.setenv("TDN_OPS_BACKEND", "triton")  # a preference for backend="auto"
    as_tuple(public_op(op)(*args))
    assert calls == [op, op]


def test_import_without_triton_falls_back():
    """Without an importable Triton, tdn_ops.triton says why, "auto" never picks it and an
    explicit backend="triton" is refused with a RuntimeError."""
    code = textwrap.dedent("""
        import sys
        sys.modules["triton"] = None  # import triton -> ImportError
        import torch, tdn_ops, tdn_ops.triton
        from tdn_ops._dispatch import triton_available
        assert not tdn_ops.triton.AVAILABLE and "triton" in tdn_ops.triton.IMPORT_ERROR
        assert not triton_available(torch.device("cpu"))
        assert sorted(tdn_ops.triton.__all__[5:]) == sorted(tdn_ops.OPERATORS)
        x = torch.randn(2, 3, 4, 4)
        tdn_ops.bidirectional_excitation(x, x, x)
        for op in tdn_ops.OPERATORS:  # every stub refuses, naming itself
            try:
                getattr(tdn_ops.triton, op)(x)
            except RuntimeError as exc:
                assert op in str(exc) and "needs Triton" in str(exc), exc
            else:
                raise AssertionError(op)
        try:
            tdn_ops.bidirectional_excitation(x, x, x, backend="triton")
        except RuntimeError as exc:
            print("refused:", exc)
    """)
    env = dict(os.environ, TRITON_INTERPRET="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "refused:" in proc.stdout


def test_unknown_or_unavailable_backend_is_an_error():
    x = torch.randn(4, 8, 5, 5)
    with pytest.raises(ValueError, match="backend must be one of"):
        tdn_ops.bidirectional_excitation(x, x, x, backend="fast")
    with pytest.raises((ValueError, RuntimeError), match="backend='cuda'"):
        tdn_ops.bidirectional_excitation(x, x, x, backend="cuda")


@pytest.mark.parametrize("case", first_case_of_each_operator(), ids=str)
def test_reference_backend_is_the_reference(case):
    args = make_args(case, torch.float64)
    for a, b in zip(as_tuple(public_op(case.op)(*args, backend="reference")),
                    as_tuple(reference_op(case.op)(*args)), strict=True):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------------------------
# bad input: a clear error naming the argument (and the expected shape where there is one)

x4 = torch.randn(8, 16, 7, 7)
w16 = torch.randn(16, 1, 3)
# project_excite_shift: mixture (2, N*T, c, H, W), projection (C, c), affine (2, C).
m4 = torch.randn(2, 8, 1, 7, 7)
p16 = torch.randn(16, 1)
a16 = torch.randn(2, 16)

BAD_CALLS = [
    ("temporal_diff_pool", lambda: tdn_ops.temporal_diff_pool(torch.randn(2, 14, 8, 8), 5),
     ValueError, r"x has 14 channels, not divisible by frames=5"),
    ("temporal_diff_pool", lambda: tdn_ops.temporal_diff_pool(torch.randn(2, 15, 1, 8), 5, 2),
     ValueError, r"x has spatial size 1x8, below the pooling kernel"),
    ("temporal_diff_pool", lambda: tdn_ops.temporal_diff_pool(torch.randn(15, 8, 8), 5),
     ValueError, r"x must be a 4-D tensor \(B, frames\*c, H, W\)"),
    ("temporal_diff_pool", lambda: tdn_ops.temporal_diff_pool(torch.randn(2, 15, 8, 8), 1),
     ValueError, r"frames must be >= 2"),
    ("temporal_diff_pool", lambda: tdn_ops.temporal_diff_pool(torch.randn(2, 15, 8, 8), 5, 0),
     ValueError, r"kernel_size must be >= 1"),
    ("temporal_diff_pool", lambda: tdn_ops.temporal_diff_pool(torch.ones(2, 15, 8, 8, dtype=torch.long)),
     TypeError, r"x must be float32, float64, float16 or bfloat16"),
    ("cross_segment_diff", lambda: tdn_ops.cross_segment_diff(x4, x4, 3),
     ValueError, r"feat.shape\[0\] \(8\) must be N\*T, a multiple of num_segments \(3\)"),
    ("cross_segment_diff", lambda: tdn_ops.cross_segment_diff(x4, x4, 0),
     ValueError, r"num_segments must be >= 1"),
    ("cross_segment_diff", lambda: tdn_ops.cross_segment_diff(x4, x4[:, :8], 8),
     ValueError, r"aligned must have the shape of feat \(8, 16, 7, 7\)"),
    ("cross_segment_diff", lambda: tdn_ops.cross_segment_diff(x4[..., :1], x4[..., :1], 8),
     ValueError, r"feat has spatial size 7x1, below the 2x2 pooling window"),
    ("cross_segment_diff", lambda: tdn_ops.cross_segment_diff(x4, x4.double(), 8),
     TypeError, r"aligned has dtype torch.float64 but feat has dtype torch.float32"),
    ("cross_segment_diff", lambda: tdn_ops.cross_segment_diff(x4, x4, 8.0),
     TypeError, r"num_segments must be an int"),
    ("multiscale_sum", lambda: tdn_ops.multiscale_sum(x4, torch.randn(8, 15, 3, 3), x4),
     ValueError, r"pooled_branch must match diff in every dim but the last two"),
    ("multiscale_sum", lambda: tdn_ops.multiscale_sum(x4, torch.randn(8, 16, 3, 3), x4[:4]),
     ValueError, r"full_branch must have the shape of diff"),
    ("multiscale_sum", lambda: tdn_ops.multiscale_sum(torch.randn(7, 7), torch.randn(3, 3),
                                                      torch.randn(7, 7)),
     ValueError, r"diff must have at least 3 dims \(\.\.\., c, H, W\)"),
    ("bidirectional_excitation", lambda: tdn_ops.bidirectional_excitation(x4, x4[:4], x4),
     ValueError, r"y_fwd must have the shape of x \(8, 16, 7, 7\)"),
    ("bidirectional_excitation", lambda: tdn_ops.bidirectional_excitation(x4, x4, "y"),
     TypeError, r"y_bwd must be a torch.Tensor"),
    ("temporal_shift_conv", lambda: tdn_ops.temporal_shift_conv(x4, torch.randn(16, 3), 8),
     ValueError, r"weight must be a 3-D tensor \(C, 1, 3\)"),
    ("temporal_shift_conv", lambda: tdn_ops.temporal_shift_conv(x4, torch.randn(8, 1, 3), 8),
     ValueError, r"weight must have shape \(C, 1, 3\) = \(16, 1, 3\)"),
    ("temporal_shift_conv", lambda: tdn_ops.temporal_shift_conv(x4, w16, 5),
     ValueError, r"x.shape\[0\] \(8\) must be N\*T, a multiple of num_segments \(5\)"),
    ("temporal_shift_conv", lambda: tdn_ops.temporal_shift_conv(x4, w16.double(), 8),
     TypeError, r"weight has dtype torch.float64 but x has dtype torch.float32"),
    ("excite_shift", lambda: tdn_ops.excite_shift(x4, x4, x4[:, :8], w16, 8),
     ValueError, r"y_bwd must have the shape of x"),
    ("excite_shift", lambda: tdn_ops.excite_shift(x4, x4, x4, w16, -1),
     ValueError, r"num_segments must be >= 1"),
    ("lateral_fuse", lambda: tdn_ops.lateral_fuse(x4, torch.randn(8, 8, 3, 3), 0.5, 0.5),
     ValueError, r"d must have x's batch and channels"),
    ("lateral_fuse", lambda: tdn_ops.lateral_fuse(x4, torch.randn(8, 16, 3, 3), "a", 0.5),
     TypeError, r"alpha must be a real number"),
    ("lateral_fuse", lambda: tdn_ops.lateral_fuse(x4, torch.randn(8, 16, 3, 3), 0.5, None),
     TypeError, r"beta must be a real number"),
    ("project_excite_shift", lambda: tdn_ops.project_excite_shift(x4, m4[:, :, :, :6], p16, a16,
                                                                  a16, w16, 8),
     ValueError, r"mixed must have shape \(2, N\*T, c, H, W\) = \(2, 8, 1, 7, 7\)"),
    ("project_excite_shift", lambda: tdn_ops.project_excite_shift(x4, m4[0], p16, a16, a16, w16,
                                                                  8),
     ValueError, r"mixed must be a 5-D tensor \(2, N\*T, c, H, W\)"),
    ("project_excite_shift", lambda: tdn_ops.project_excite_shift(x4, m4, p16[:8], a16, a16, w16,
                                                                  8),
     ValueError, r"weight must have shape \(C, c\) with C=16"),
    ("project_excite_shift", lambda: tdn_ops.project_excite_shift(x4, m4, p16, a16[0], a16, w16,
                                                                  8),
     ValueError, r"scale must be a 2-D tensor \(2, C\)"),
    ("project_excite_shift", lambda: tdn_ops.project_excite_shift(x4, m4, p16, a16, a16[:, :8],
                                                                  w16, 8),
     ValueError, r"bias must have shape \(2, C\) = \(2, 16\)"),
    ("project_excite_shift", lambda: tdn_ops.project_excite_shift(x4, m4, p16, a16, a16,
                                                                  w16[:8], 8),
     ValueError, r"shift_weight must have shape \(C, 1, 3\) = \(16, 1, 3\)"),
    ("project_excite_shift", lambda: tdn_ops.project_excite_shift(x4, m4, p16, a16, a16, w16, 3),
     ValueError, r"x.shape\[0\] \(8\) must be N\*T, a multiple of num_segments \(3\)"),
    ("project_excite_shift", lambda: tdn_ops.project_excite_shift(x4, m4.double(), p16, a16, a16,
                                                                  w16, 8),
     TypeError, r"mixed has dtype torch.float64 but x has dtype torch.float32"),
]


@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=native), "reference"])
@pytest.mark.parametrize("op,call,exc,message", BAD_CALLS, ids=[f"{b[0]}-{i}" for i, b in
                                                             enumerate(BAD_CALLS)])
def test_bad_input_names_the_argument(op, call, exc, message, backend, monkeypatch):
    monkeypatch.setenv("TDN_OPS_BACKEND", backend)
    with pytest.raises(exc, match=message):
        call()


@pytest.mark.parametrize("target", target_params((CUDA,)))
def test_mismatched_devices_name_the_argument(target):
    x = torch.randn(2, 3, 4, 4, device=target.device)
    with pytest.raises((ValueError, RuntimeError), match="y_fwd"):
        tdn_ops.bidirectional_excitation(x, torch.randn(2, 3, 4, 4), x, backend=target.backend)
    with pytest.raises((ValueError, RuntimeError), match="y_fwd"):
        torch.ops.tdn_ops.bidirectional_excitation(x, torch.randn(2, 3, 4, 4), x)


@pytest.mark.parametrize("target", target_params(NATIVE_TARGETS))
def test_direct_native_calls_are_checked_too(target):
    """torch.ops.tdn_ops.* called without the Python wrapper still refuse bad arguments, by the
    same rule and with the same message on the CPU and CUDA kernels (csrc/op_checks.h)."""
    x = x4.to(target.device)
    w = w16.to(target.device)
    with pytest.raises(RuntimeError, match=re.escape("weight must have shape (C, 1, 3)")):
        torch.ops.tdn_ops.temporal_shift_conv(x, w[:8], 8)
    with pytest.raises(RuntimeError, match="multiple of num_segments"):
        torch.ops.tdn_ops.excite_shift(x, x, x, w, 3)
    with pytest.raises(RuntimeError, match="not divisible by frames"):
        torch.ops.tdn_ops.temporal_diff_pool(x[:, :14], 5, 2)
    affine = a16.to(target.device)
    with pytest.raises(RuntimeError, match=re.escape("scale must have shape (2, C)")):
        torch.ops.tdn_ops.project_excite_shift(x, m4.to(target.device), p16.to(target.device),
                                               affine[:, :8], affine, w, 8)
    # The dtype rule: the four kernel dtypes, forward and backward, with the argument's name.
    dtypes = "must be float32, float64, float16 or bfloat16"
    with pytest.raises(RuntimeError, match="x " + dtypes):
        torch.ops.tdn_ops.bidirectional_excitation(*(x.to(torch.float8_e4m3fn),) * 3)
    with pytest.raises(RuntimeError, match="grad_out " + dtypes):
        torch.ops.tdn_ops.lateral_fuse_backward(x.long(), 3, 3, 0.5, 0.5)
    with pytest.raises(RuntimeError, match="grad_out " + dtypes):
        torch.ops.tdn_ops.temporal_diff_pool_backward(x[:, :12].long(), 4, 2, 14, 14)
    with pytest.raises(RuntimeError, match="grad_diff " + dtypes):
        grad = torch.zeros(2, 8, 16, 8, 8, dtype=torch.long, device=target.device)
        torch.ops.tdn_ops.cross_segment_diff_backward(grad, grad[..., :4, :4], 8)
