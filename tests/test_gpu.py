"""The GPU backends ("cuda" C++ kernels and "triton") against the plain-PyTorch references.

Every operator x backend x dtype (float32, float16, bfloat16) x layout (contiguous,
channels_last, strided): outputs and the gradient of every tensor input against the reference
computed in float64 on the CPU from the very same (rounded) inputs. Besides the odd shapes of
op_cases, GPU_CASES have row lengths and channel counts that are multiples of 8 so that the
16-byte vector paths of the kernels run, and a misaligned-pointer test forces their scalar
fallbacks on those same shapes. Also: output layouts, a bitwise-deterministic weight gradient,
empty batches, NaN propagation, mismatched devices, and indexing past 2**31 elements.

Without a CUDA device the whole module is skipped, with the reason shown (never passed).
"""

from __future__ import annotations

import os

import pytest
import torch

import tdn_ops
from op_cases import (LAYOUTS, Case, as_tuple, cases_for, make_args, public_op, reference_op,
                      rel_error, tensor_positions, with_grad)
from tdn_ops._dispatch import resolve_backend

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="no CUDA device: the GPU operator suite needs one"),
]

DEVICE = "cuda"
BACKENDS = ("cuda", "triton")
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# ‖fused − reference(float64)‖ / ‖reference‖ allowed per dtype, for outputs and gradients.
TOLERANCE = {torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 1.5e-2}

# Shapes whose rows (H*W or W) and channel counts are multiples of 8, 4 or 2, so that the
# vectorised kernel paths (16-, 8- and 4-byte vectors) run in every dtype; plus medium shapes
# with many thread blocks, and a non-integer upsampling ratio (the general nearest-index
# formula).
GPU_CASES = [
    *[Case(op, d, "vec") for op in ("bidirectional_excitation", "temporal_shift_conv",
                                    "excite_shift")
      for d in ((2, 8, 16, 8, 8), (1, 4, 32, 14, 14), (2, 8, 64, 28, 28), (1, 2, 1040, 2, 2))],
    *[Case("temporal_diff_pool", d, "vec") for d in ((2, 5, 8, 16, 16, 2),
                                                     (4, 5, 3, 64, 48, 2), (2, 5, 8, 17, 16, 2))],
    *[Case("cross_segment_diff", d, "vec") for d in ((2, 8, 8, 8, 8), (1, 4, 16, 9, 16),
                                                     (2, 8, 8, 56, 56), (2, 4, 8, 14, 14),
                                                     (1, 2, 6, 7, 10))],
    *[Case("multiscale_sum", d, "vec") for d in (((2, 4), 8, 16, 16, 8, 8),
                                                 ((2, 16), 16, 28, 28, 14, 14))],
    *[Case("lateral_fuse", d, "vec") for d in ((2, 16, 16, 16, 8, 8, 0.5, 0.5),
                                               (2, 8, 10, 24, 3, 7, 0.75, 0.25),
                                               (4, 64, 56, 56, 28, 28, 0.5, 0.5))],
]
ALL_CASES = cases_for() + GPU_CASES


# Backends that must be present (comma-separated), e.g. "cuda,triton" in scripts/gpu_check.sh:
# for them a missing backend fails the test instead of skipping it.
REQUIRED = {b for b in os.environ.get("TDN_OPS_REQUIRE_BACKENDS", "").split(",") if b}


def require_backend(backend: str, op: str) -> None:
    """Skip (with the reason) when ``backend`` cannot run ``op`` on this CUDA device."""
    try:
        resolve_backend(op, backend, torch.device(DEVICE))
    except (RuntimeError, ValueError) as exc:
        message = f"backend {backend!r} unavailable for {op}: {exc}"
        if backend in REQUIRED:
            pytest.fail(message + " (required by TDN_OPS_REQUIRE_BACKENDS)")
        pytest.skip(message)


def forward_backward(fn, args, seed=1):
    """Outputs and the gradients of every tensor argument for a fixed random upstream grad."""
    args = with_grad(args)
    outs = fn(args)
    g = torch.Generator().manual_seed(seed)
    grads_out = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.device, o.dtype)
                 for o in outs]
    torch.autograd.backward(outs, grads_out)
    return outs, [args[i].grad for i in tensor_positions(args)]


def fused_fn(case, backend):
    return lambda a: as_tuple(public_op(case.op)(*a, backend=backend))


def reference_on_cpu(case, args):
    """The reference in float64 on the CPU, from the same (already rounded) inputs."""
    ref_args = [a.detach().cpu().double() if isinstance(a, torch.Tensor) else a for a in args]
    return forward_backward(lambda a: as_tuple(reference_op(case.op)(*a)), ref_args)


def assert_matches(outs, grads, ref_outs, ref_grads, dtype):
    tol = TOLERANCE[dtype]
    for i, (o, r) in enumerate(zip(outs, ref_outs)):
        assert o.device.type == DEVICE and o.dtype == dtype and o.shape == r.shape
        err = rel_error(o.cpu(), r)
        assert err <= tol, f"output {i}: rel error {err:.2e} > {tol}"
    for i, (gr, r) in enumerate(zip(grads, ref_grads)):
        assert gr is not None and gr.dtype == dtype and gr.shape == r.shape
        err = rel_error(gr.cpu(), r)
        assert err <= tol, f"grad of tensor arg {i}: rel error {err:.2e} > {tol}"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_matches_reference(case, backend, dtype, layout):
    require_backend(backend, case.op)
    args = make_args(case, dtype, device=DEVICE, layout=layout)
    outs, grads = forward_backward(fused_fn(case, backend), args)
    ref_outs, ref_grads = reference_on_cpu(case, args)
    assert_matches(outs, grads, ref_outs, ref_grads, dtype)


def _misaligned(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` (same strides) whose data pointer is one element past a 16-byte
    boundary: the kernels must take their scalar path and still be right."""
    storage = torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)
    view = storage[1:].as_strided(t.shape, t.stride()) if t.is_contiguous() or \
        t.is_contiguous(memory_format=torch.channels_last) else None
    if view is None:
        return t
    view.copy_(t)
    return view


@pytest.mark.parametrize("layout", ("contiguous", "channels_last"))
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", GPU_CASES, ids=str)
def test_misaligned_inputs(case, backend, layout):
    require_backend(backend, case.op)
    args = make_args(case, torch.float32, device=DEVICE, layout=layout)
    args = [_misaligned(a) if isinstance(a, torch.Tensor) and a.dim() >= 3 else a for a in args]
    assert any(isinstance(a, torch.Tensor) and a.data_ptr() % 16 for a in args)
    outs, grads = forward_backward(fused_fn(case, backend), args)
    ref_outs, ref_grads = reference_on_cpu(case, args)
    assert_matches(outs, grads, ref_outs, ref_grads, torch.float32)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_output_keeps_input_layout(case, backend):
    """channels_last in, channels_last out (per 4-D block), as the fake kernels promise."""
    require_backend(backend, case.op)
    args = make_args(case, torch.float32, device=DEVICE, layout="channels_last")
    outs = as_tuple(public_op(case.op)(*args, backend=backend))
    lead = args[0].reshape((-1,) + tuple(args[0].shape[-3:])) if args[0].dim() >= 4 else args[0]
    if lead.dim() != 4 or lead.is_contiguous():
        pytest.skip("the primary input is not channels_last-only (size-1 dims)")
    for o in outs:
        for block in (o.unbind(0) if o.dim() == 5 else (o,)):
            b4 = block.reshape((-1,) + tuple(block.shape[-3:])) if block.dim() > 4 else block
            assert b4.is_contiguous(memory_format=torch.channels_last), f"{case}: {o.stride()}"


@pytest.mark.parametrize("layout", ("contiguous", "channels_last"))
@pytest.mark.parametrize("op", ("temporal_shift_conv", "excite_shift"))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_weight_gradient_is_deterministic(op, dtype, layout):
    """The two-stage reduction gives bitwise-identical weight gradients run after run."""
    require_backend("cuda", op)
    case = Case(op, (4, 8, 64, 28, 28))
    args = make_args(case, dtype, device=DEVICE, layout=layout)
    weight_pos = 1 if op == "temporal_shift_conv" else 3
    grads = []
    for _ in range(4):
        a = with_grad(args)
        out = public_op(op)(*a, backend="cuda")
        out.backward(torch.ones_like(out))
        grads.append(a[weight_pos].grad.clone())
    for g in grads[1:]:
        assert torch.equal(g, grads[0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", cases_for(), ids=str)
def test_empty_batch(case, backend):
    require_backend(backend, case.op)
    args = make_args(case, torch.float32, device=DEVICE)
    if args[0].dim() < 4:
        pytest.skip("no batch dim")
    # Every batched (>= 4-D) tensor loses its batch; the (C, 1, 3) weight stays.
    empty = with_grad([a[:0] if isinstance(a, torch.Tensor) and a.dim() >= 4 else a
                       for a in args])
    outs = as_tuple(public_op(case.op)(*empty, backend=backend))
    ref = as_tuple(reference_op(case.op)(*[a.detach().cpu() if isinstance(a, torch.Tensor)
                                           else a for a in empty]))
    for o, r in zip(outs, ref):
        assert o.shape == r.shape and o.numel() == 0
    torch.autograd.backward([o.sum() for o in outs])
    for i in tensor_positions(empty):
        assert empty[i].grad is not None and empty[i].grad.shape == empty[i].shape
        if empty[i].numel():  # the weight: an empty sum
            assert torch.all(empty[i].grad == 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", [c for c in ALL_CASES if c.note != "vec"][::3], ids=str)
def test_nan_propagates(case, backend):
    require_backend(backend, case.op)
    args = make_args(case, torch.float32, device=DEVICE)
    args[0] = args[0].clone()
    args[0].view(-1)[0] = float("nan")
    outs = as_tuple(public_op(case.op)(*args, backend=backend))
    ref = as_tuple(reference_op(case.op)(*[a.cpu() if isinstance(a, torch.Tensor) else a
                                           for a in args]))
    for o, r in zip(outs, ref):
        assert torch.equal(o.isnan().cpu(), r.isnan())


def test_mismatched_devices_name_the_argument():
    require_backend("cuda", "bidirectional_excitation")
    x = torch.randn(2, 3, 4, 4, device=DEVICE)
    with pytest.raises((ValueError, RuntimeError), match="y_fwd"):
        tdn_ops.bidirectional_excitation(x, torch.randn(2, 3, 4, 4), x, backend="cuda")
    with pytest.raises((ValueError, RuntimeError), match="y_fwd"):
        torch.ops.tdn_ops.bidirectional_excitation(x, torch.randn(2, 3, 4, 4), x)


def test_float64_runs_on_cuda_kernels():
    """float64 is not a training dtype, but the CUDA kernels accept it (gradcheck on GPU)."""
    require_backend("cuda", "excite_shift")
    case = Case("excite_shift", (1, 3, 4, 3, 3))
    args = with_grad(make_args(case, torch.float64, device=DEVICE))
    tensors = [args[i] for i in tensor_positions(args)]

    def fn(*ts):
        full = list(args)
        for i, t in zip(tensor_positions(args), ts):
            full[i] = t
        return tdn_ops.excite_shift(*full, backend="cuda")

    assert torch.autograd.gradcheck(fn, tensors, eps=1e-6, atol=1e-7, rtol=1e-5)


def _free_bytes() -> int:
    free, _ = torch.cuda.mem_get_info()
    return free


@pytest.mark.parametrize("op", ("bidirectional_excitation", "temporal_shift_conv"))
def test_index_arithmetic_past_two_to_the_31(op):
    """A tensor of more than 2**31 elements: the last video is checked against the reference
    (a 32-bit offset would wrap and read or write the wrong place)."""
    require_backend("cuda", op)
    n, t, c, h, w = 2, 8, 1032, 512, 256  # 2_164_260_864 elements > 2**31
    numel = n * t * c * h * w
    assert numel > 2**31
    tensors = 4 if op == "bidirectional_excitation" else 2
    if _free_bytes() < tensors * numel * 2 + (2 << 30):
        pytest.skip(f"needs {tensors * numel * 2 / 2**30:.1f} GiB of free GPU memory")
    g = torch.Generator(device=DEVICE).manual_seed(0)
    x = torch.randn((n * t, c, h, w), generator=g, device=DEVICE, dtype=torch.float16)
    tail = slice((n - 1) * t, n * t)  # the last video: offsets past 2**31
    if op == "bidirectional_excitation":
        yf = torch.randn_like(x)
        out = tdn_ops.bidirectional_excitation(x, yf, x, backend="cuda")[tail]
        ref = tdn_ops.reference.bidirectional_excitation(x[tail].float(), yf[tail].float(),
                                                         x[tail].float())
        del yf
    else:
        weight = torch.randn((c, 1, 3), generator=g, device=DEVICE, dtype=torch.float16)
        out = tdn_ops.temporal_shift_conv(x, weight, t, backend="cuda")[tail]
        ref = tdn_ops.reference.temporal_shift_conv(x[tail].float(), weight.float(), t)
    assert rel_error(out.float(), ref) <= TOLERANCE[torch.float16]
