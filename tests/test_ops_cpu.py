"""The C++ CPU kernels against the plain-PyTorch references: values and every input's gradient.

gradcheck in float64; float32/bfloat16/float16 against a float64 reference on the same
(rounded) inputs; contiguous, channels_last and strided inputs; odd shapes (see op_cases).
"""

from __future__ import annotations

import os

import pytest
import torch

import tdn_ops
from op_cases import (LAYOUTS, as_tuple, cases_for, make_args, public_op, reference_op,
                      rel_error, tensor_positions, with_grad)

pytestmark = pytest.mark.skipif(not tdn_ops.NATIVE_AVAILABLE,
                                reason="tdn_ops._C is not built: the CPU kernels are missing")

# ‖fused − reference(float64)‖ / ‖reference‖ allowed per dtype, for outputs and gradients.
TOLERANCE = {torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 1.5e-2}


def run_fused(case, args, backend="cpu"):
    return as_tuple(public_op(case.op)(*args, backend=backend))


def forward_backward(fn, args, seed=1):
    """Outputs and the gradients of every tensor argument for a fixed random upstream grad."""
    args = with_grad(args)
    outs = fn(args)
    g = torch.Generator().manual_seed(seed)
    grads_out = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype) for o in outs]
    torch.autograd.backward(outs, grads_out)
    return outs, [args[i].grad for i in tensor_positions(args)]


@pytest.mark.parametrize("case", cases_for(), ids=str)
def test_gradcheck_float64(case):
    args = with_grad(make_args(case, torch.float64))
    fused = public_op(case.op)

    def fn(*tensors):
        full = list(args)
        for i, t in zip(tensor_positions(args), tensors):
            full[i] = t
        return fused(*full, backend="cpu")

    tensors = [args[i] for i in tensor_positions(args)]
    # The full Jacobian of the larger cases would take gigabytes: check those through random
    # projections (gradcheck's fast mode), the small ones element by element.
    fast = sum(t.numel() for t in tensors) > 1500
    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=fast)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("case", cases_for(), ids=str)
def test_matches_reference(case, dtype, layout):
    args = make_args(case, dtype, layout=layout)
    outs, grads = forward_backward(lambda a: run_fused(case, a), args)
    # Ground truth: the authors' code path in float64 on the very same (rounded) inputs.
    ref_args = [a.double() if isinstance(a, torch.Tensor) else a for a in args]
    ref_outs, ref_grads = forward_backward(lambda a: as_tuple(reference_op(case.op)(*a)), ref_args)
    tol = TOLERANCE[dtype]
    for i, (o, r) in enumerate(zip(outs, ref_outs)):
        assert o.dtype == dtype and o.shape == r.shape
        assert rel_error(o, r) <= tol, f"output {i}: rel error {rel_error(o, r):.2e} > {tol}"
    for i, (gr, r) in enumerate(zip(grads, ref_grads)):
        assert gr is not None and gr.dtype == dtype and gr.shape == r.shape
        assert rel_error(gr, r) <= tol, f"grad of tensor arg {i}: {rel_error(gr, r):.2e} > {tol}"


@pytest.mark.parametrize("case", cases_for(), ids=str)
def test_float32_close_elementwise(case):
    """Beyond the norm: every element of every output and gradient is close in float32."""
    args = make_args(case, torch.float32)
    outs, grads = forward_backward(lambda a: run_fused(case, a), args)
    ref_outs, ref_grads = forward_backward(lambda a: as_tuple(reference_op(case.op)(*a)), args)
    for a, b in zip(outs + tuple(grads), ref_outs + tuple(ref_grads)):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("case", cases_for(), ids=str)
def test_output_keeps_input_layout(case):
    args = make_args(case, torch.float32, layout="channels_last")
    outs = run_fused(case, args)
    lead = args[0]
    if lead.dim() == 4 and not lead.is_contiguous():
        for o in outs:
            o4 = o.reshape((-1,) + tuple(o.shape[-3:])) if o.dim() > 4 else (o[0] if o.dim() == 5 else o)
            assert o4.is_contiguous(memory_format=torch.channels_last), f"{case}: {o.stride()}"


@pytest.mark.parametrize("case", cases_for(), ids=str)
def test_empty_batch(case):
    args = make_args(case, torch.float32)
    if args[0].dim() < 4:
        pytest.skip("no batch dim")
    # Every batched (>= 4-D) tensor loses its batch; the (C, 1, 3) weight stays.
    empty = with_grad([a[:0] if isinstance(a, torch.Tensor) and a.dim() >= 4 else a
                       for a in args])
    outs = run_fused(case, empty)
    ref = as_tuple(reference_op(case.op)(*[a.detach() if isinstance(a, torch.Tensor) else a
                                           for a in empty]))
    for o, r in zip(outs, ref):
        assert o.shape == r.shape and o.numel() == 0
    torch.autograd.backward([o.sum() for o in outs])
    for i in tensor_positions(empty):
        assert empty[i].grad is not None and empty[i].grad.shape == empty[i].shape


@pytest.mark.parametrize("case", cases_for(), ids=str)
def test_nan_propagates(case):
    args = make_args(case, torch.float32)
    args[0] = args[0].clone()
    args[0].view(-1)[0] = float("nan")
    fused, ref = run_fused(case, args), as_tuple(reference_op(case.op)(*args))
    for f, r in zip(fused, ref):
        assert torch.equal(torch.isnan(f), torch.isnan(r))


@pytest.mark.parametrize("op", ["temporal_shift_conv", "excite_shift"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_weight_gradient_is_deterministic(op, layout):
    """Same bits whatever the number of threads (two-stage reduction, no atomics)."""
    case = cases_for(op)[0]
    args = make_args(case, torch.float32, layout=layout)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            _, grads = forward_backward(lambda a: run_fused(case, a), args)
            results.append(grads[-1])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


def test_single_segment_has_zero_differences():
    x = torch.randn(3, 4, 6, 6)
    diff, pooled = tdn_ops.cross_segment_diff(x, torch.randn_like(x), 1, backend="cpu")
    assert diff.abs().max() == 0 and pooled.abs().max() == 0


def test_tsm_initialised_shift_moves_frames():
    """With the TSM initialisation the temporal conv is a shift of channel groups (SPEC §5)."""
    n, t, c = 2, 4, 16
    x = torch.randn(n * t, c, 3, 3)
    w = torch.zeros(c, 1, 3)
    fold = c // 8
    w[:fold, 0, 2] = 1
    w[fold:2 * fold, 0, 0] = 1
    w[2 * fold:, 0, 1] = 1
    y = tdn_ops.temporal_shift_conv(x, w, t, backend="cpu").view(n, t, c, 3, 3)
    x5 = x.view(n, t, c, 3, 3)
    assert torch.equal(y[:, :-1, :fold], x5[:, 1:, :fold])            # from t+1
    assert torch.equal(y[:, -1, :fold], torch.zeros_like(y[:, -1, :fold]))
    assert torch.equal(y[:, 1:, fold:2 * fold], x5[:, :-1, fold:2 * fold])  # from t-1
    assert torch.equal(y[:, :, 2 * fold:], x5[:, :, 2 * fold:])


@pytest.mark.parametrize("case", [cases_for(op)[0] for op in tdn_ops.OPERATORS], ids=str)
def test_function_class_matches_operator(case):
    cls = {
        "temporal_diff_pool": tdn_ops.TemporalDiffPoolFunction,
        "cross_segment_diff": tdn_ops.CrossSegmentDiffFunction,
        "multiscale_sum": tdn_ops.MultiscaleSumFunction,
        "bidirectional_excitation": tdn_ops.BidirectionalExcitationFunction,
        "temporal_shift_conv": tdn_ops.TemporalShiftConvFunction,
        "excite_shift": tdn_ops.ExciteShiftFunction,
        "lateral_fuse": tdn_ops.LateralFuseFunction,
    }[case.op]
    args = make_args(case, torch.float64)
    outs_a, grads_a = forward_backward(lambda a: as_tuple(cls.apply(*a)), args)
    outs_b, grads_b = forward_backward(lambda a: run_fused(case, a), args)
    for a, b in zip(outs_a + tuple(grads_a), outs_b + tuple(grads_b)):
        assert torch.equal(a, b)


@pytest.mark.skipif(os.environ.get("TDN_TEST_LARGE") != "1",
                    reason="needs ~9 GB of memory; set TDN_TEST_LARGE=1 to run")
def test_index_arithmetic_past_two_to_the_31():
    """2**31 + 2 bfloat16 elements: offsets overflow 32 bits in the last frame."""
    t, w = 2, 2**30 + 1
    x = torch.zeros(t, 1, 1, w, dtype=torch.bfloat16)
    x[0, 0, 0, -1], x[1, 0, 0, -1] = 1.0, 2.0
    weight = torch.tensor([[[0.5, 1.0, 0.25]]], dtype=torch.bfloat16)
    y = tdn_ops.temporal_shift_conv(x, weight, t, backend="cpu")
    # frame 0 = 1*x0 + 0.25*x1, frame 1 = 0.5*x0 + 1*x1 at the very last element.
    assert y[0, 0, 0, -1].item() == 1.5 and y[1, 0, 0, -1].item() == 2.5
    assert y[0, 0, 0, 0].item() == 0.0
