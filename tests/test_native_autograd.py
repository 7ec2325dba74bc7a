"""The operators' autograd runs in C++ (csrc/autograd.cpp): no Python between a native
operator's call and its gradients, and the same gradients as the Python autograd.Function
built from the same backward operator."""

from __future__ import annotations

import os
import sys

import pytest
import torch

import tdn_ops
from op_cases import LAYOUTS, as_tuple, first_case_of_each_operator, make_args, with_grad
from tdn_ops._extension import has_native_autograd
from tdn_ops._registry import class_name

pytestmark = pytest.mark.skipif(not tdn_ops.NATIVE_AVAILABLE,
                                reason="tdn_ops._C is not built: no native operators")

# The operators whose Autograd kernel csrc/autograd.cpp registers.
CPP_AUTOGRAD_OPS = ("temporal_diff_pool", "cross_segment_diff", "multiscale_sum",
                    "bidirectional_excitation", "temporal_shift_conv", "excite_shift",
                    "lateral_fuse", "project_excite_shift")
CASES = [c for c in first_case_of_each_operator() if c.op in CPP_AUTOGRAD_OPS]
TDN_OPS_DIR = os.path.dirname(tdn_ops.__file__)
TORCH_LIBRARY_DIR = os.path.join(os.path.dirname(torch.__file__), "_library")


def native(op: str):
    return getattr(torch.ops.tdn_ops, op).default


def forward_backward(fn, args, seed=0):
    """Outputs and the gradients of every tensor input for fixed random upstream gradients."""
    outs = as_tuple(fn(*args))
    gen = torch.Generator().manual_seed(seed)
    grads = [torch.randn(o.shape, generator=gen, dtype=o.dtype) for o in outs]
    inputs = [a for a in args if isinstance(a, torch.Tensor)]
    return outs, torch.autograd.grad(outs, inputs, grads)


def test_every_operator_has_cpp_autograd():
    assert set(CPP_AUTOGRAD_OPS) == set(tdn_ops.OPERATORS)
    for op in CPP_AUTOGRAD_OPS:
        assert has_native_autograd(op), op


@pytest.mark.parametrize("case", CASES, ids=str)
def test_graph_node_is_the_cpp_function(case):
    args = with_grad(make_args(case, torch.float32))
    out = as_tuple(native(case.op)(*args))[0]
    assert type(out.grad_fn).__name__ == "CppFunction"
    assert out.grad_fn.name().startswith("torch::autograd::CppNode<tdn::")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_no_python_between_call_and_gradients(case):
    """Neither torch.library's Python autograd nor any tdn_ops Python runs inside the native
    operator's forward or backward (only torch.autograd.grad's own Python wrapper does)."""
    args = with_grad(make_args(case, torch.float32))
    forward_backward(native(case.op), args)  # warm up: first-call lookups are allowed
    visited = set()

    def profile(frame, event, arg):
        if event == "call":
            visited.add(frame.f_code.co_filename)

    sys.setprofile(profile)
    try:
        forward_backward(native(case.op), args)
    finally:
        sys.setprofile(None)
    offending = sorted(f for f in visited
                       if f.startswith(TDN_OPS_DIR) or f.startswith(TORCH_LIBRARY_DIR))
    assert not offending


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_same_values_and_gradients_as_the_python_function(case, layout):
    """The C++ Function and the Python ``<Name>Function`` call the same kernels: results,
    gradients and output strides are identical, bit for bit."""
    python_function = getattr(tdn_ops, class_name(case.op))
    args = make_args(case, torch.float64, layout=layout)
    outs, grads = forward_backward(native(case.op), with_grad(args))
    ref_outs, ref_grads = forward_backward(python_function.apply, with_grad(args))
    for got, want in zip(outs + grads, ref_outs + ref_grads):
        assert torch.equal(got, want)
        assert got.stride() == want.stride()


def test_unused_output_gets_a_zero_gradient():
    """Only ``diff`` of cross_segment_diff feeds the loss: the pooled output's gradient is
    taken as zero, as with the reference."""
    feat = torch.randn(16, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    aligned = torch.randn(16, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    diff, _ = native("cross_segment_diff")(feat, aligned, 8)
    got = torch.autograd.grad((diff * diff).sum(), (feat, aligned))
    ref_diff, _ = tdn_ops.reference.cross_segment_diff(feat, aligned, 8)
    want = torch.autograd.grad((ref_diff * ref_diff).sum(), (feat, aligned))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=0)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_gradcheck_through_the_cpp_function(case):
    args = with_grad(make_args(case, torch.float64))
    assert torch.autograd.gradcheck(native(case.op), tuple(args), fast_mode=True)


def test_no_grad_calls_record_nothing():
    x = torch.randn(8, 16, 5, 5, requires_grad=True)
    w = torch.randn(16, 1, 3, requires_grad=True)
    with torch.no_grad():
        y = native("temporal_shift_conv")(x, w, 8)
    assert y.grad_fn is None and not y.requires_grad
