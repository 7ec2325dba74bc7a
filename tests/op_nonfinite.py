"""Operator inputs holding infinities and NaN, and the rule their results must follow.

The rule (docs/math.md §6, "Non-finite values"): wherever the float64 reference's result is
finite, a fused operator's result is finite and within the dtype's tolerance of it; wherever
the reference's result is non-finite, so is the fused one (it may be ``inf`` where the
reference has NaN, or the other way round, but a non-finite value is never hidden).

Shared by tests/test_ops_nonfinite.py (the CPU and Triton backends) and the CUDA host
emulation (csrc/cuda/host_emulation/check_nonfinite.py), so every backend meets one rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

import tdn_ops
from op_cases import TOLERANCE, Case, cases_for, make_args, tensor_positions

SPECIAL_VALUES = (float("inf"), float("-inf"), float("nan"))


@dataclass(frozen=True)
class Injection:
    """``value`` written into tensor argument ``arg`` of ``case`` at its first, middle and last
    element: for a (N*T, C, H, W) input that is the first and the last segment of a video
    (where the temporal operators meet their zero padding), for a (C, 1, 3) shift weight the
    first channel's first tap and the last channel's last tap."""

    case: Case
    arg: int
    value: float

    def __str__(self) -> str:
        return f"{self.case}-arg{self.arg}={self.value}"


def smallest_case(op: str) -> Case:
    """The operator's case with the fewest input elements (the interpreter is slow)."""
    return min(cases_for(op), key=lambda c: sum(a.numel() for a in make_args(c)
                                                if isinstance(a, torch.Tensor)))


def injections(ops=tdn_ops.OPERATORS) -> Iterator[Injection]:
    """Every special value into every tensor argument of each operator's smallest case."""
    for op in ops:
        case = smallest_case(op)
        for arg in tensor_positions(make_args(case)):
            for value in SPECIAL_VALUES:
                yield Injection(case, arg, value)


def injected_args(injection: Injection, dtype=torch.float32, device="cpu",
                  layout="contiguous") -> list:
    """The case's arguments with the special value written in place (layout kept)."""
    args = make_args(injection.case, dtype, device=device, layout=layout)
    target = args[injection.arg]
    n = target.numel()
    for flat in sorted({0, n // 2, n - 1}):
        index = torch.unravel_index(torch.tensor(flat), target.shape)
        target[tuple(int(i) for i in index)] = injection.value
    return args


def nonfinite_mismatch(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype,
                       what: str) -> str | None:
    """Why ``actual`` breaks the rule against the float64 ``expected`` (None when it keeps it)."""
    actual = actual.detach().cpu().double()
    expected = expected.detach().cpu().double()
    if actual.shape != expected.shape:
        return f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    finite = expected.isfinite()
    hidden = ~finite & actual.isfinite()
    if hidden.any():
        i = int(hidden.flatten().nonzero()[0])
        return (f"{what}: finite {actual.flatten()[i].item()} at flat index {i} where the "
                f"reference is {expected.flatten()[i].item()}")
    lost = finite & ~actual.isfinite()
    if lost.any():
        i = int(lost.flatten().nonzero()[0])
        return (f"{what}: {actual.flatten()[i].item()} at flat index {i} where the reference "
                f"is finite ({expected.flatten()[i].item()})")
    if not finite.any():
        return None
    tol = TOLERANCE[dtype]
    a, e = actual[finite], expected[finite]
    # atol in units of the finite part's largest magnitude, as in the finite-input tests.
    scale = max(1.0, e.abs().max().item())
    bad = (a - e).abs() > tol.atol * scale + tol.rtol * e.abs()
    if bad.any():
        i = int(bad.nonzero()[0])
        return f"{what}: {a[i].item()} where the reference is {e[i].item()} (finite part)"
    return None
