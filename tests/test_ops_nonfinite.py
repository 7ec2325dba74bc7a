"""Operators on infinities and NaN: every backend follows the reference wherever it is finite.

Each operator's smallest test case gets +inf, -inf or NaN in one tensor argument (first,
middle and last element: the video's first and last segments, the shift weight's outer taps);
forward and backward on each target are held to the rule of tests/op_nonfinite.py against the
float64 reference. The CUDA kernels meet the same rule in csrc/cuda/host_emulation
(check_nonfinite.py) and on a GPU through the cuda targets here.
"""

from __future__ import annotations

import pytest
import torch

import tdn_ops
from op_cases import tensor_positions
from op_nonfinite import injected_args, injections, nonfinite_mismatch
from op_targets import TARGETS, Target, forward_backward, reference_float64, run_op, \
    target_params


def _matrix(target: Target):
    """(operator, dtype, layout): the interpreter (slow) gets float32 contiguous only."""
    if target.interpreted:
        combos = [(torch.float32, "contiguous")]
    else:
        combos = [(torch.float32, "contiguous"), (torch.float32, "channels_last"),
                  (torch.float16, "contiguous"), (torch.float64, "contiguous")]
    return [(op, dtype, layout) for op in tdn_ops.OPERATORS for dtype, layout in combos]


# Operators whose kernels do not follow the rule yet, with why (remove an entry once it does).
KNOWN_GAPS: dict[str, str] = {}


@pytest.mark.parametrize("target,op,dtype,layout", target_params(TARGETS, _matrix))
def test_matches_reference_wherever_it_is_finite(target, op, dtype, layout):
    problems = []
    for injection in injections((op,)):
        args = injected_args(injection, dtype, device=target.device, layout=layout)
        outs, grads = forward_backward(lambda a: run_op(target, op, a), args)
        ref_outs, ref_grads = reference_float64(op, args)
        found = [nonfinite_mismatch(o, r, dtype, f"output {i}")
                 for i, (o, r) in enumerate(zip(outs, ref_outs, strict=True))]
        found += [nonfinite_mismatch(g, r, dtype, f"gradient of argument {i}")
                  for i, g, r in zip(tensor_positions(args), grads, ref_grads, strict=True)]
        problems += [f"{injection}: {p}" for p in found if p]
    if problems and op in KNOWN_GAPS:
        pytest.xfail(KNOWN_GAPS[op])
    assert not problems, f"{op} ({dtype}, {layout}) on {target}:\n" + "\n".join(problems)


def test_the_rule_catches_a_nan_where_the_reference_is_finite():
    # The rule itself: a NaN where the reference is finite, a finite value where it is not,
    # and a finite error beyond the tolerance are all reported; matching values are not.
    ref = torch.tensor([1.0, float("inf"), float("nan"), 2.0], dtype=torch.float64)
    assert nonfinite_mismatch(ref.float(), ref, torch.float32, "out") is None
    assert nonfinite_mismatch(torch.tensor([1.0, float("nan"), float("inf"), 2.0]), ref,
                              torch.float32, "out") is None
    assert "finite" in nonfinite_mismatch(torch.tensor([float("nan"), 1.0, 1.0, 2.0]), ref,
                                          torch.float32, "out")
    assert "0.0" in nonfinite_mismatch(torch.tensor([1.0, 0.0, float("nan"), 2.0]), ref,
                                       torch.float32, "out")
    assert nonfinite_mismatch(torch.tensor([1.0, float("inf"), float("nan"), 2.5]), ref,
                              torch.float32, "out") is not None
