"""The operators as PyTorch sees them: opcheck, torch.compile, export, autocast, dispatch, and
every misuse SPEC §6 lists failing with a message that names the argument."""

from __future__ import annotations

import re

import pytest
import torch

import tdn_ops
from op_cases import as_tuple, cases_for, make_args, public_op, reference_op, with_grad

native = pytest.mark.skipif(not tdn_ops.NATIVE_AVAILABLE,
                            reason="tdn_ops._C is not built: the CPU kernels are missing")


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


@native
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("case", [cases_for(op)[0] for op in tdn_ops.OPERATORS], ids=str)
def test_opcheck(case, layout):
    args = with_grad(make_args(case, torch.float32, layout=layout))
    torch.library.opcheck(getattr(torch.ops.tdn_ops, case.op).default, args)
    plain = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
    backward = getattr(torch.ops.tdn_ops, case.op + "_backward").default
    torch.library.opcheck(backward, _backward_args(case, plain))


# --------------------------------------------------------------------------------------------
# torch.compile(fullgraph=True) and torch.export


class TinyTDNBlock(torch.nn.Module):
    """Every operator once, wired as in TDN, small enough to compile quickly."""

    def __init__(self, c=8, t=4):
        super().__init__()
        self.t = t
        self.weight = torch.nn.Parameter(torch.randn(c, 1, 3))
        self.conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)

    def forward(self, clip, x):
        motion = tdn_ops.temporal_diff_pool(clip, 5, 2)                  # (NT, 4c', H/2, W/2)
        x = tdn_ops.lateral_fuse(x, motion[:, : x.shape[1]], 0.5, 0.5)
        diff, pooled = tdn_ops.cross_segment_diff(x, self.conv(x), self.t)
        m = tdn_ops.multiscale_sum(diff, pooled, diff)
        y = tdn_ops.bidirectional_excitation(x, m[0], m[1])
        y = tdn_ops.temporal_shift_conv(y, self.weight, self.t)
        return tdn_ops.excite_shift(y, m[0], m[1], self.weight, self.t)


def _tiny_inputs():
    torch.manual_seed(0)
    return torch.randn(8, 40, 12, 12), torch.randn(8, 8, 12, 12)


@native
def test_compile_fullgraph_matches_eager():
    block = TinyTDNBlock()
    clip, x = _tiny_inputs()
    compiled = torch.compile(block, fullgraph=True, backend="inductor")
    x_eager, x_comp = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager = block(clip, x_eager)
    out = compiled(clip, x_comp)
    torch.testing.assert_close(out, eager)
    eager.square().sum().backward()
    out.square().sum().backward()
    torch.testing.assert_close(x_comp.grad, x_eager.grad)


@native
def test_export_traces_the_operators():
    block = TinyTDNBlock()
    clip, x = _tiny_inputs()
    exported = torch.export.export(block, (clip, x))
    targets = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert {f"tdn_ops.{op}.default" for op in tdn_ops.OPERATORS} <= targets
    torch.testing.assert_close(exported.module()(clip, x), block(clip, x))


# --------------------------------------------------------------------------------------------
# autocast: every floating input is cast to the autocast dtype (documented in README)


@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=native), "reference"])
@pytest.mark.parametrize("case", [cases_for(op)[0] for op in tdn_ops.OPERATORS], ids=str)
def test_autocast_bf16_runs_in_bf16(case, backend):
    args = with_grad(make_args(case, torch.float32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outs = as_tuple(public_op(case.op)(*args, backend=backend))
    assert all(o.dtype == torch.bfloat16 for o in outs)
    expected = as_tuple(reference_op(case.op)(*[
        a.detach().to(torch.bfloat16).double() if isinstance(a, torch.Tensor) else a
        for a in args]))
    for o, e in zip(outs, expected):
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
    from tdn_ops._dispatch import resolve_backend

    assert resolve_backend("excite_shift", "auto", torch.device("cpu")) == "cpu"
    assert "cpu" in tdn_ops.available_backends("cpu")


def test_env_variable_prefers_a_backend(monkeypatch):
    from tdn_ops._dispatch import resolve_backend

    monkeypatch.setenv("TDN_OPS_BACKEND", "reference")
    assert resolve_backend("excite_shift", "auto", torch.device("cpu")) == "reference"
    monkeypatch.setenv("TDN_OPS_BACKEND", "triton")  # unavailable here: falls back to auto
    assert resolve_backend("excite_shift", "auto", torch.device("cpu")) in ("cpu", "reference",
                                                                            "triton")
    monkeypatch.setenv("TDN_OPS_BACKEND", "bogus")
    with pytest.raises(ValueError, match="TDN_OPS_BACKEND"):
        resolve_backend("excite_shift", "auto", torch.device("cpu"))


def test_unknown_or_unavailable_backend_is_an_error():
    x = torch.randn(4, 8, 5, 5)
    with pytest.raises(ValueError, match="backend must be one of"):
        tdn_ops.bidirectional_excitation(x, x, x, backend="fast")
    with pytest.raises((ValueError, RuntimeError), match="backend='cuda'"):
        tdn_ops.bidirectional_excitation(x, x, x, backend="cuda")


@pytest.mark.parametrize("case", [cases_for(op)[0] for op in tdn_ops.OPERATORS], ids=str)
def test_reference_backend_is_the_reference(case):
    args = make_args(case, torch.float64)
    for a, b in zip(as_tuple(public_op(case.op)(*args, backend="reference")),
                    as_tuple(reference_op(case.op)(*args))):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------------------------
# bad input: a clear error naming the argument (and the expected shape where there is one)

x4 = torch.randn(8, 16, 7, 7)
w16 = torch.randn(16, 1, 3)

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
]


@pytest.mark.parametrize("backend", [pytest.param("cpu", marks=native), "reference"])
@pytest.mark.parametrize("op,call,exc,message", BAD_CALLS, ids=[f"{b[0]}-{i}" for i, b in
                                                             enumerate(BAD_CALLS)])
def test_bad_input_names_the_argument(op, call, exc, message, backend, monkeypatch):
    monkeypatch.setenv("TDN_OPS_BACKEND", backend)
    with pytest.raises(exc, match=message):
        call()


@native
def test_direct_native_calls_are_checked_too():
    """torch.ops.tdn_ops.* called without the Python wrapper still refuse bad shapes."""
    with pytest.raises(RuntimeError, match=re.escape("weight must have shape (C, 1, 3)")):
        torch.ops.tdn_ops.temporal_shift_conv(x4, torch.randn(8, 1, 3), 8)
    with pytest.raises(RuntimeError, match="multiple of num_segments"):
        torch.ops.tdn_ops.excite_shift(x4, x4, x4, w16, 3)
    with pytest.raises(RuntimeError, match="not divisible by frames"):
        torch.ops.tdn_ops.temporal_diff_pool(torch.randn(2, 14, 8, 8), 5, 2)
