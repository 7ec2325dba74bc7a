"""Every operator on every target against the plain-PyTorch references: values and gradients.

One body per check, the target (backend and device, tests/op_targets.py) a parameter: the C++
CPU kernels, the Triton kernels under the interpreter on CPU tensors (small shapes only: the
interpreter is slow), the CUDA C++ kernels and the compiled Triton kernels on CUDA. GPU targets
skip with the reason on a machine without one.

Checked: gradcheck in float64; float32/bfloat16/float16 (and float64) against a float64
reference on the same rounded inputs, for contiguous, channels_last and strided inputs and odd
shapes (op_cases); output layouts; empty batches; NaN propagation; stride-0 upstream gradients;
deterministic weight gradients; misaligned inputs; indexing past 2**31 elements.
"""

from __future__ import annotations

import os

import pytest
import torch

import tdn_ops
from op_cases import (ALL_CASES, CASES, GPU_CASES, LAYOUTS, TOLERANCE, Case, as_tuple,
                      cases_for, first_case_of_each_operator, make_args, reference_op, rel_error,
                      tensor_positions, with_grad)
from op_targets import (CPU, GPU_TARGETS, NATIVE_TARGETS, TARGETS, Target,
                        check_against_reference, forward_backward, is_channels_last, run_op,
                        target_params)

HALF_AND_SINGLE = (torch.float32, torch.bfloat16, torch.float16)


def _cases(target: Target) -> list[Case]:
    """Odd shapes everywhere; the vector-path shapes too on the GPU."""
    return ALL_CASES if target.device == "cuda" else CASES


def _few_cases_when_interpreted(target: Target) -> list[Case]:
    """CASES; for the (slow) interpreter, the first case of each operator."""
    return first_case_of_each_operator() if target.interpreted else CASES


def _value_matrix(target):
    """(case, dtype, layout) per target. The interpreter has no bfloat16 and is slow: float32
    and float16 in the dense layouts, float32 strided."""
    if target.interpreted:
        pairs = [(d, lay) for d in (torch.float32, torch.float16)
                 for lay in ("contiguous", "channels_last")] + [(torch.float32, "strided")]
    else:
        pairs = [(d, lay) for d in HALF_AND_SINGLE for lay in LAYOUTS]
    return [(case, d, lay) for case in _cases(target) for d, lay in pairs]


# ---------------------------------------------------------------------------- values and grads

@pytest.mark.parametrize("target,case,dtype,layout", target_params(TARGETS, _value_matrix))
def test_matches_reference(target, case, dtype, layout):
    args = make_args(case, dtype, device=target.device, layout=layout)
    outs = check_against_reference(target, case.op, args, dtype)
    primary = args[0]
    if layout == "channels_last" and is_channels_last(primary) and not primary.is_contiguous():
        assert is_channels_last(outs[0]), "output must take the input's channels_last layout"
    elif layout == "contiguous":
        assert outs[0].is_contiguous()


FLOAT64_OPS = ("temporal_diff_pool", "cross_segment_diff", "excite_shift", "lateral_fuse")


@pytest.mark.parametrize("target,op", target_params(TARGETS, lambda t: FLOAT64_OPS))
def test_float64_computes_in_float64(target, op):
    args = make_args(cases_for(op)[1], torch.float64, device=target.device)
    check_against_reference(target, op, args, torch.float64)


@pytest.mark.parametrize("target,case", target_params(NATIVE_TARGETS, lambda t: CASES))
def test_gradcheck_float64(target, case):
    args = with_grad(make_args(case, torch.float64, device=target.device))
    positions = tensor_positions(args)

    def fn(*tensors):
        full = list(args)
        for i, t in zip(positions, tensors, strict=True):
            full[i] = t
        return run_op(target, case.op, full)

    tensors = [args[i] for i in positions]
    # The full Jacobian of the larger cases would take gigabytes: check those through random
    # projections (gradcheck's fast mode), the small ones element by element.
    fast = sum(t.numel() for t in tensors) > 1500
    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=fast)


@pytest.mark.parametrize("target,case", target_params(NATIVE_TARGETS, lambda t: CASES))
def test_float32_close_elementwise_to_float32_reference(target, case):
    """Beyond the float64 comparison: every element of every output and gradient is close to
    the reference computed in float32 from the same inputs."""
    args = make_args(case, torch.float32, device=target.device)
    outs, grads = forward_backward(lambda a: run_op(target, case.op, a), args)
    ref_outs, ref_grads = forward_backward(lambda a: as_tuple(reference_op(case.op)(*a)),
                                           [a.cpu() if isinstance(a, torch.Tensor) else a
                                            for a in args])
    for a, b in zip(outs + grads, ref_outs + ref_grads, strict=True):
        torch.testing.assert_close(a.cpu(), b, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("target,op", target_params(TARGETS, lambda t: tdn_ops.OPERATORS))
def test_expanded_upstream_gradient(target, op):
    """``out.sum().backward()`` hands the kernels a stride-0 gradient."""
    args = make_args(cases_for(op)[0], torch.float32, device=target.device)
    fused = with_grad(args)
    ref = with_grad([a.detach().cpu().double() if isinstance(a, torch.Tensor) else a
                     for a in args])
    sum(o.sum() for o in run_op(target, op, fused)).backward()
    sum(o.sum() for o in as_tuple(reference_op(op)(*ref))).backward()
    for i in tensor_positions(args):
        tol = TOLERANCE[torch.float32]
        torch.testing.assert_close(fused[i].grad.cpu().double(), ref[i].grad, atol=tol.atol,
                                   rtol=tol.rtol, msg=lambda m: f"{op} gradient {i}: {m}")


@pytest.mark.parametrize("target", target_params(TARGETS))
def test_cross_segment_diff_one_output_used(target):
    """Only ``pooled`` reaches the loss: the kernels get no gradient for ``diff``."""
    args = with_grad(make_args(cases_for("cross_segment_diff")[1], torch.float32,
                               device=target.device))
    ref = with_grad([a.detach().cpu().double() if isinstance(a, torch.Tensor) else a
                     for a in args])
    run_op(target, "cross_segment_diff", args)[1].square().sum().backward()
    reference_op("cross_segment_diff")(*ref)[1].square().sum().backward()
    for i in (0, 1):
        tol = TOLERANCE[torch.float32]
        torch.testing.assert_close(args[i].grad.cpu().double(), ref[i].grad, atol=tol.atol,
                                   rtol=tol.rtol)


@pytest.mark.parametrize("target,op", target_params(NATIVE_TARGETS,
                                                    lambda t: tdn_ops.OPERATORS))
def test_function_class_matches_operator(target, op):
    """``tdn_ops.<Name>Function.apply`` is the native operator with its registered backward."""
    cls = getattr(tdn_ops, "".join(p.title() for p in op.split("_")) + "Function")
    args = make_args(cases_for(op)[0], torch.float64, device=target.device)
    outs_a, grads_a = forward_backward(lambda a: as_tuple(cls.apply(*a)), args)
    outs_b, grads_b = forward_backward(lambda a: run_op(target, op, a), args)
    for a, b in zip(outs_a + grads_a, outs_b + grads_b, strict=True):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------- layouts and edges

def _layout_cases(target: Target) -> list[Case]:
    return _few_cases_when_interpreted(target) if target.device == "cpu" else _cases(target)


@pytest.mark.parametrize("target,case", target_params(TARGETS, _layout_cases))
def test_output_keeps_input_layout(target, case):
    """channels_last in, channels_last out (per 4-D block), as the fake kernels promise."""
    args = make_args(case, torch.float32, device=target.device, layout="channels_last")
    lead = args[0].reshape((-1,) + tuple(args[0].shape[-3:])) if args[0].dim() >= 4 else args[0]
    if lead.dim() != 4 or lead.is_contiguous():
        pytest.skip("the primary input is not channels_last-only (size-1 dims)")
    for o in run_op(target, case.op, args):
        assert is_channels_last(o), f"{case}: strides {o.stride()}"


def _empty_params(target):
    """Every case with its batch emptied; multiscale_sum also with an inner leading dim."""
    return [(case, 0) for case in CASES] + [
        (case, 1) for case in cases_for("multiscale_sum") if len(case.dims[0]) >= 2]


@pytest.mark.parametrize("target,case,empty_dim", target_params(TARGETS, _empty_params))
def test_empty_batch(target, case, empty_dim):
    args = make_args(case, torch.float32, device=target.device)
    if args[0].dim() < 4:
        pytest.skip("no batch dim")
    # Every batched (>= 4-D) tensor loses its batch (or inner leading) dim, counted as in the
    # primary input: dims in front of those (project_excite_shift's two directions) stay, and
    # so do the weights.
    rank = args[0].dim()
    empty = with_grad([a.narrow(empty_dim + a.dim() - rank, 0, 0)
                       if isinstance(a, torch.Tensor) and a.dim() >= 4 else a for a in args])
    outs = run_op(target, case.op, empty)
    ref = as_tuple(reference_op(case.op)(*[a.detach().cpu() if isinstance(a, torch.Tensor)
                                           else a for a in empty]))
    for o, r in zip(outs, ref, strict=True):
        assert o.shape == r.shape and o.numel() == 0
    torch.autograd.backward([o.sum() for o in outs])
    for i in tensor_positions(empty):
        assert empty[i].grad is not None and empty[i].grad.shape == empty[i].shape
        assert not empty[i].grad.any()  # the weight's gradient is an empty sum: zero


@pytest.mark.parametrize("target,case", target_params(TARGETS, _few_cases_when_interpreted))
def test_nan_propagates(target, case):
    args = make_args(case, torch.float32, device=target.device)
    args[0] = args[0].clone()
    args[0].view(-1)[0] = float("nan")
    outs = run_op(target, case.op, args)
    ref = as_tuple(reference_op(case.op)(*[a.cpu() if isinstance(a, torch.Tensor) else a
                                           for a in args]))
    for o, r in zip(outs, ref, strict=True):
        assert torch.equal(o.isnan().cpu(), r.isnan())


@pytest.mark.parametrize("target", target_params(TARGETS))
def test_single_segment_has_zero_differences(target):
    x = torch.randn(3, 4, 6, 6, device=target.device)
    diff, pooled = tdn_ops.cross_segment_diff(x, torch.randn_like(x), 1, backend=target.backend)
    assert diff.shape == (2, 3, 4, 6, 6) and pooled.shape == (2, 3, 4, 3, 3)
    assert diff.abs().max() == 0 and pooled.abs().max() == 0


@pytest.mark.parametrize("target", target_params(TARGETS))
def test_tsm_initialised_shift_moves_frames(target):
    """With the TSM initialisation the temporal conv is a shift of channel groups
    (docs/math.md §5)."""
    n, t, c = 2, 4, 16
    x = torch.randn(n * t, c, 3, 3, device=target.device)
    w = torch.zeros(c, 1, 3, device=target.device)
    fold = c // 8
    w[:fold, 0, 2] = 1
    w[fold:2 * fold, 0, 0] = 1
    w[2 * fold:, 0, 1] = 1
    y = tdn_ops.temporal_shift_conv(x, w, t, backend=target.backend).view(n, t, c, 3, 3)
    x5 = x.view(n, t, c, 3, 3)
    assert torch.equal(y[:, :-1, :fold], x5[:, 1:, :fold])            # from t+1
    assert torch.equal(y[:, -1, :fold], torch.zeros_like(y[:, -1, :fold]))
    assert torch.equal(y[:, 1:, fold:2 * fold], x5[:, :-1, fold:2 * fold])  # from t-1
    assert torch.equal(y[:, :, 2 * fold:], x5[:, :, 2 * fold:])


def _determinism_params(target):
    """(op, dtype, layout, case). GPUs: every training dtype on a shape with many blocks; the
    CPU: both layouts; the interpreter: the small contiguous case."""
    ops = ("temporal_shift_conv", "excite_shift")
    if target.device == "cuda":
        return [(op, d, lay, Case(op, (4, 8, 64, 28, 28))) for op in ops
                for d in HALF_AND_SINGLE for lay in ("contiguous", "channels_last")]
    layouts = ("contiguous",) if target.interpreted else ("contiguous", "channels_last")
    return [(op, torch.float32, lay, cases_for(op)[0]) for op in ops for lay in layouts]


@pytest.mark.parametrize("target,op,dtype,layout,case",
                         target_params(TARGETS, _determinism_params))
def test_weight_gradient_is_deterministic(target, op, dtype, layout, case):
    """Same bits run after run, and on the CPU whatever the number of threads (two-stage
    reduction, no atomics)."""
    args = make_args(case, dtype, device=target.device, layout=layout)
    weight_pos = 1 if op == "temporal_shift_conv" else 3
    runs = (1, 2, 1) if target == CPU else (None, None, None)  # CPU: thread counts
    threads = torch.get_num_threads()
    grads = []
    try:
        for n in runs:
            if n is not None:
                torch.set_num_threads(n)
            a = with_grad(args)
            out = run_op(target, op, a)[0]
            out.backward(torch.ones_like(out))
            grads.append(a[weight_pos].grad.clone())
    finally:
        torch.set_num_threads(threads)
    assert grads[0].abs().sum() > 0
    for g in grads[1:]:
        assert torch.equal(g, grads[0])


def _misaligned(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` with the same strides whose data pointer is one element past a 16-byte
    boundary: the kernels must take their scalar path and still be right."""
    reach = 1 + sum((n - 1) * st for n, st in zip(t.shape, t.stride(), strict=True)) \
        if t.numel() else 0
    storage = torch.empty(reach + 1, dtype=t.dtype, device=t.device)
    view = storage[1:].as_strided(t.shape, t.stride())
    view.copy_(t)
    return view


def _misaligned_params(target):
    """The vector-path shapes; on the CPU (whose kernels vectorise too) the first of each
    operator, to keep the suite quick."""
    cases = GPU_CASES
    if target.device == "cpu":
        cases = [next(c for c in GPU_CASES if c.op == op) for op in tdn_ops.OPERATORS]
    return [(c, lay) for c in cases for lay in ("contiguous", "channels_last")]


@pytest.mark.parametrize("target,case,layout",
                         target_params((CPU,) + GPU_TARGETS, _misaligned_params))
def test_misaligned_inputs(target, case, layout):
    args = make_args(case, torch.float32, device=target.device, layout=layout)
    args = [_misaligned(a) if isinstance(a, torch.Tensor) and a.dim() >= 3 else a for a in args]
    assert any(isinstance(a, torch.Tensor) and a.data_ptr() % 16 for a in args)
    check_against_reference(target, case.op, args, torch.float32)


# ---------------------------------------------------------------------------- past 2**31

def _free_bytes() -> int:
    free, _ = torch.cuda.mem_get_info()
    return free


@pytest.mark.parametrize("target,op", target_params(
    GPU_TARGETS, lambda t: ("bidirectional_excitation", "temporal_shift_conv")))
def test_index_arithmetic_past_two_to_the_31(target, op):
    """A tensor of more than 2**31 elements: the last video, whose offsets pass 2**31, against
    the reference, forward (and backward of the shift, the tiled weight-gradient kernels):
    32-bit offsets would wrap and read or write the wrong place."""
    n, t, c, h, w = 2, 8, 1032, 512, 256  # 2_164_260_864 elements > 2**31
    numel = n * t * c * h * w
    assert numel > 2**31
    tensors = 4 if op == "bidirectional_excitation" else 8  # inputs, outputs, gradients
    if _free_bytes() < tensors * numel * 2 + (2 << 30):
        pytest.skip(f"needs {tensors * numel * 2 / 2**30:.0f} GiB of free GPU memory")
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn((n * t, c, h, w), generator=g, device="cuda", dtype=torch.float16)
    tail = slice((n - 1) * t, n * t)
    tol = TOLERANCE[torch.float16]
    if op == "bidirectional_excitation":
        yf = torch.randn_like(x)
        out = tdn_ops.bidirectional_excitation(x, yf, x, backend=target.backend)[tail]
        ref = reference_op(op)(x[tail].float(), yf[tail].float(), x[tail].float())
        assert rel_error(out.float(), ref) <= tol.norm
        return
    weight = torch.randn((c, 1, 3), generator=g, device="cuda", dtype=torch.float16)
    x.requires_grad_()
    out = tdn_ops.temporal_shift_conv(x, weight, t, backend=target.backend)
    grad_out = torch.randn(out.shape, generator=g, device="cuda", dtype=torch.float16)
    out.backward(grad_out)
    x_tail = x.detach()[tail].float().requires_grad_()
    ref = reference_op(op)(x_tail, weight.float(), t)
    ref.backward(grad_out[tail].float())
    torch.testing.assert_close(out[tail].float(), ref, atol=tol.atol, rtol=tol.rtol)
    torch.testing.assert_close(x.grad[tail].float(), x_tail.grad, atol=tol.atol, rtol=tol.rtol)


@pytest.mark.skipif(os.environ.get("TDN_TEST_LARGE") != "1",
                    reason="needs ~9 GB of memory; set TDN_TEST_LARGE=1 to run")
@pytest.mark.parametrize("target", target_params((CPU,)))
def test_index_arithmetic_past_two_to_the_31_sparse(target):
    """2**31 + 2 bfloat16 elements in a tensor that is zero but for its last column: offsets
    overflow 32 bits in the last frame, and the exact values show it (memory-light for CPUs)."""
    t, w = 2, 2**30 + 1
    x = torch.zeros(t, 1, 1, w, dtype=torch.bfloat16, device=target.device)
    x[0, 0, 0, -1], x[1, 0, 0, -1] = 1.0, 2.0
    weight = torch.tensor([[[0.5, 1.0, 0.25]]], dtype=torch.bfloat16, device=target.device)
    y = tdn_ops.temporal_shift_conv(x, weight, t, backend=target.backend)
    # frame 0 = 1*x0 + 0.25*x1, frame 1 = 0.5*x0 + 1*x1 at the very last element.
    assert y[0, 0, 0, -1].item() == 1.5 and y[1, 0, 0, -1].item() == 2.5
    assert y[0, 0, 0, 0].item() == 0.0


def test_first_cases_cover_every_operator():
    """The per-operator tests draw one case of each operator: none is missing."""
    assert [c.op for c in first_case_of_each_operator()] == list(tdn_ops.OPERATORS)
