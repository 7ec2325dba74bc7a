"""Where an operator test runs (backend and device), and the one harness every test uses.

A :class:`Target` is a backend on a device: the C++ CPU kernels, the Triton kernels under
Triton's interpreter on CPU tensors, the CUDA C++ kernels, the Triton kernels compiled for
CUDA. Operator tests take ``target`` as a pytest parameter (see :func:`target_params`); the
``target`` fixture in conftest.py skips, with the reason, a target this machine cannot run
(GPU targets on a CPU machine), and sets ``TRITON_INTERPRET=1`` during interpreted tests.

The harness runs an operator forward and backward for a fixed upstream gradient and compares
it with the plain-PyTorch reference run in float64 on the very same (rounded) inputs, with the
tolerances of :data:`op_cases.TOLERANCE`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
import torch

import tdn_ops
from tdn_ops import _dispatch
import tdn_ops.triton as tdn_triton
from op_cases import TOLERANCE, as_tuple, public_op, reference_op, rel_error, tensor_positions, \
    with_grad


@dataclass(frozen=True)
class Target:
    backend: str  # the operators' backend= argument
    device: str  # where the test's tensors live

    @property
    def name(self) -> str:
        if self.backend == "triton":
            return "triton-interpret" if self.device == "cpu" else "triton-cuda"
        return self.backend

    @property
    def interpreted(self) -> bool:
        """Triton kernels run by Triton's interpreter (numpy) on CPU tensors: slow, so the
        tests give this target small shapes only."""
        return self.backend == "triton" and self.device == "cpu"

    @property
    def native(self) -> bool:
        return self.backend in ("cpu", "cuda")

    def __str__(self) -> str:
        return self.name


CPU = Target("cpu", "cpu")
TRITON_INTERPRET = Target("triton", "cpu")
CUDA = Target("cuda", "cuda")
TRITON_CUDA = Target("triton", "cuda")
TARGETS = (CPU, TRITON_INTERPRET, CUDA, TRITON_CUDA)
GPU_TARGETS = (CUDA, TRITON_CUDA)
NATIVE_TARGETS = (CPU, CUDA)

# Backends that must be present on a CUDA machine (comma-separated), e.g. "cuda,triton" in
# scripts/gpu_check.sh: for them a missing backend fails the test instead of skipping it.
REQUIRED = {b for b in os.environ.get("TDN_OPS_REQUIRE_BACKENDS", "").split(",") if b}


def target_params(targets=TARGETS, *values_per_target) -> list:
    """``pytest.param(target)`` for each target, marked ``gpu`` for the CUDA ones.

    With ``values_per_target`` (a function ``target -> iterable of tuples``), one param per
    target and tuple: ``pytest.param(target, *values)``, for tests whose other parameters
    depend on the target (the interpreter gets fewer, smaller cases).
    """
    params = []
    for target in targets:
        marks = (pytest.mark.gpu,) if target.device == "cuda" else ()
        if not values_per_target:
            params.append(pytest.param(target, id=target.name, marks=marks))
            continue
        (values_of,) = values_per_target
        for values in values_of(target):
            values = values if isinstance(values, tuple) else (values,)
            ident = "-".join([target.name] + [_ident(v) for v in values])
            params.append(pytest.param(target, *values, id=ident, marks=marks))
    return params


def _ident(value) -> str:
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    return str(value)


def unavailable_reason(target: Target, op: str | None = None) -> str | None:
    """Why ``target`` cannot run here (None when it can): the operator ``op``, or every
    operator when None (a test of several at once). Call with TRITON_INTERPRET set as the
    target needs it."""
    if target.device == "cuda" and not torch.cuda.is_available():
        return f"no CUDA device: the {target.name} target needs one"
    if target.backend == "triton":
        if not tdn_triton.AVAILABLE:
            return f"tdn_ops.triton is unavailable: {tdn_triton.IMPORT_ERROR}"
        if target.interpreted and torch.cuda.is_available():
            return "a CUDA device is present: the Triton kernels were compiled for it " \
                   "(target triton-cuda), not interpreted"
        if target.interpreted and not tdn_triton.INTERPRET:
            return "tdn_ops.triton was imported without TRITON_INTERPRET=1 (tests/conftest.py " \
                   "sets it on CPU-only machines before anything imports Triton)"
    device = torch.device(target.device)
    needed = tdn_ops.OPERATORS if op is None else (op,)
    missing = [name for name in needed if not _dispatch._available(target.backend, name, device)]
    if missing:
        if target.native and not tdn_ops.NATIVE_AVAILABLE:
            return "tdn_ops._C is not built: the native kernels are missing"
        return f"backend {target.backend!r} has no {target.device} kernel of {', '.join(missing)}"
    return None


def activate(target: Target, monkeypatch, op: str | None = None) -> None:
    """Skip (or, for a required backend on a CUDA machine, fail) when ``target`` cannot run;
    otherwise make the dispatcher offer it for the test's duration."""
    if target.interpreted:
        # The dispatcher offers backend="triton" for CPU tensors only under the interpreter.
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    reason = unavailable_reason(target, op)
    if reason is None:
        return
    if target.device == "cuda" and torch.cuda.is_available() and target.backend in REQUIRED:
        pytest.fail(f"{reason} (required by TDN_OPS_REQUIRE_BACKENDS)")
    pytest.skip(reason)


# ------------------------------------------------------------------------------ harness

def run_op(target: Target, op: str, args) -> tuple[torch.Tensor, ...]:
    """Operator ``op`` through the public API on ``target``'s backend; always a tuple."""
    return as_tuple(public_op(op)(*args, backend=target.backend))


def forward_backward(fn, args, seed=1, grad_dtype=None):
    """Outputs and every tensor argument's gradient for a fixed random upstream gradient.

    ``fn(args)`` returns a tuple of outputs. The upstream gradient is drawn in float64 and
    rounded to ``grad_dtype`` (default: each output's dtype), so that the float64 reference can
    be given the very same values.
    """
    args = with_grad(args)
    outs = fn(args)
    g = torch.Generator().manual_seed(seed)
    grads_out = [torch.randn(o.shape, generator=g, dtype=torch.float64)
                 .to(grad_dtype or o.dtype).to(o.device, o.dtype) for o in outs]
    torch.autograd.backward(outs, grads_out)
    return outs, tuple(args[i].grad for i in tensor_positions(args))


def reference_float64(op: str, args, seed=1):
    """The reference in float64 on the CPU, from the same (rounded) inputs and upstream grads."""
    dtype = next(a.dtype for a in args if isinstance(a, torch.Tensor))
    ref_args = [a.detach().cpu().double() if isinstance(a, torch.Tensor) else a for a in args]
    return forward_backward(lambda a: as_tuple(reference_op(op)(*a)), ref_args, seed, dtype)


def assert_close_to_reference(actual, expected, dtype, device: str, what: str) -> None:
    """One result (output or gradient) against its float64 reference: device, dtype, shape,
    the norm bound and the elementwise bound of ``TOLERANCE[dtype]``."""
    assert actual is not None, f"{what}: no gradient"
    assert actual.device.type == device, f"{what}: on {actual.device}, expected {device}"
    assert actual.dtype == dtype and actual.shape == expected.shape, \
        f"{what}: {actual.dtype} {tuple(actual.shape)}, expected {dtype} {tuple(expected.shape)}"
    tol = TOLERANCE[dtype]
    err = rel_error(actual.cpu(), expected)
    assert err <= tol.norm, f"{what}: relative error {err:.2e} > {tol.norm}"
    # atol in units of the result's largest magnitude (at least 1): a reduction such as the
    # weight gradient sums thousands of terms, and its small elements inherit the rounding
    # error of its large ones.
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual.detach().cpu().double(), expected.double(),
                               atol=tol.atol * scale, rtol=tol.rtol,
                               msg=lambda m: f"{what}: {m}")


def check_against_reference(target: Target, op: str, args, dtype):
    """Forward and backward of ``op`` on ``target`` against the float64 reference; returns the
    outputs."""
    outs, grads = forward_backward(lambda a: run_op(target, op, a), args)
    ref_outs, ref_grads = reference_float64(op, args)
    assert len(outs) == len(ref_outs) and len(grads) == len(ref_grads)
    for i, (o, r) in enumerate(zip(outs, ref_outs, strict=True)):
        assert_close_to_reference(o, r, dtype, target.device, f"{op} output {i}")
    for i, g, r in zip(tensor_positions(args), grads, ref_grads, strict=True):
        assert_close_to_reference(g, r, dtype, target.device, f"{op} gradient of argument {i}")
    return outs


def is_channels_last(t: torch.Tensor) -> bool:
    """Channels-last per (…, c, H, W) block (5-D outputs hold two 4-D halves)."""
    blocks = t.unbind(0) if t.dim() == 5 else (t,)
    return all(b.reshape((-1,) + tuple(b.shape[-3:])).is_contiguous(
        memory_format=torch.channels_last) for b in blocks)
