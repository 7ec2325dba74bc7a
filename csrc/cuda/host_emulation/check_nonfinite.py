"""The host-emulated CUDA launchers on infinities and NaN (run.sh builds them and runs this).

Every operator's smallest test case with +inf, -inf or NaN in one tensor argument, forward and
backward through the launchers exactly as check.py calls them, held to the rule of
tests/op_nonfinite.py (the rule every backend meets): wherever the float64 reference is finite
the kernel is finite and close to it, and it never hides a non-finite value.
"""

from __future__ import annotations

import sys

import torch

import check  # noqa: E402  (loads the emulated launchers, puts tests/ on sys.path)
from op_cases import as_tuple, reference_op, tensor_positions, with_grad  # noqa: E402
from op_nonfinite import injected_args, injections, nonfinite_mismatch  # noqa: E402

DTYPES = (torch.float32, torch.float16)
LAYOUTS = ("contiguous", "channels_last")


def main(ops: list[str]) -> int:
    runs = failures = 0
    for injection in injections():
        op = injection.case.op
        if op not in check.EMULATED or (ops and op not in ops):
            continue
        dtypes = DTYPES + ((torch.float64,) if op in check.FLOAT64_OPS else ())
        for dtype in dtypes:
            for layout in LAYOUTS:
                args = injected_args(injection, dtype, layout=layout)
                ref_args = with_grad([a.double() if isinstance(a, torch.Tensor) else a
                                      for a in args])
                ref = as_tuple(reference_op(op)(*ref_args))
                gen = torch.Generator().manual_seed(1)
                grads_out = [torch.randn(o.shape, generator=gen, dtype=torch.float64)
                             for o in ref]
                torch.autograd.backward(ref, grads_out)
                ref_grads = [ref_args[i].grad for i in tensor_positions(ref_args)]
                outs = check.forward(op, args)
                grads = check.backward(op, args, [g.to(dtype) for g in grads_out])
                runs += 1
                problems = [nonfinite_mismatch(a, e, dtype, f"output {i}")
                            for i, (a, e) in enumerate(zip(outs, ref, strict=True))]
                problems += [nonfinite_mismatch(a, e, dtype, f"gradient {i}")
                             for i, (a, e) in enumerate(zip(grads, ref_grads, strict=True))]
                problems = [p for p in problems if p]
                if problems:
                    failures += 1
                    print("FAIL", injection, dtype, layout, "; ".join(problems), flush=True)
    print(f"host emulation, non-finite inputs: {runs} runs, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
