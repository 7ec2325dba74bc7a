"""Self-test: every available backend of every operator against the reference, on this machine.

    python -m tdn_ops.selftest [--device cuda] [--dtype float32 ...] [--cases N] [--seed S]

For each operator, backend that can run it on ``--device`` (the C++ kernels, CUDA kernels,
Triton; ``reference`` is the ground truth) and dtype, it draws ``--cases`` random calls
(shapes and memory views from :mod:`tdn_ops._samples`), runs forward and backward, and compares
outputs and gradients with the plain-PyTorch reference run in float64 on the same rounded
inputs. It prints one table row per (operator, backend, dtype) and exits with status 1 when a
result is outside its tolerance (or a backend raises), 2 when nothing could be compared. Run it
on a new GPU, driver or Triton version before training.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

import tdn_ops

from . import _samples, reference
from ._dispatch import BACKENDS, resolve_backend
from ._operators import OPERATORS

__all__ = ["TOLERANCE", "Tolerance", "Row", "check_call", "main", "run_selftest"]


@dataclass(frozen=True)
class Tolerance:
    """``norm`` bounds ‖fused − reference‖ / max(‖reference‖, √numel); elementwise,
    |fused − reference| may not exceed ``atol * max(1, max|reference|) + rtol * |reference|``."""

    norm: float
    atol: float
    rtol: float


# Per dtype (outputs and gradients alike): float32 accumulates like the reference; the half
# types round once on store; float64 is limited by the float32 constants some kernels take.
# The test suite (tests/op_cases.py) uses this same table.
TOLERANCE = {
    torch.float32: Tolerance(norm=2e-6, atol=1e-5, rtol=1e-5),
    torch.float16: Tolerance(norm=2e-3, atol=2e-3, rtol=2e-3),
    torch.bfloat16: Tolerance(norm=1.5e-2, atol=1.6e-2, rtol=1.6e-2),
    torch.float64: Tolerance(norm=1e-7, atol=1e-9, rtol=1e-6),
}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64}
FUSED_BACKENDS = tuple(b for b in BACKENDS if b not in ("auto", "reference"))


# ------------------------------------------------------------------------- one comparison

def error_ratio(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> float:
    """How far ``actual`` is from the float64 ``expected``, in units of the tolerance: at most
    1 passes. A non-finite value that the reference does not have there (and the other way
    round), or a wrong shape, is ``inf``."""
    a = actual.detach().cpu().double()
    e = expected.detach().cpu().double()
    if a.shape != e.shape:
        return float("inf")
    if a.numel() == 0:
        return 0.0
    # Wherever either side is non-finite, both must hold the same value (inf, -inf or NaN).
    nonfinite = ~a.isfinite() | ~e.isfinite()
    if (nonfinite & ~((a == e) | (a.isnan() & e.isnan()))).any():
        return float("inf")
    a, e = a.nan_to_num(0.0, 0.0, 0.0), e.nan_to_num(0.0, 0.0, 0.0)
    tol = TOLERANCE[dtype]
    # Relative to the reference's norm, but to no less than unit-sized values: where the
    # reference (nearly) cancels, e.g. differences of an input expanded along the frames, a
    # relative error would measure rounding noise against zero.
    norm = ((a - e).norm() / max(e.norm().item(), a.numel() ** 0.5)).item() / tol.norm
    allowed = tol.atol * max(1.0, e.abs().max().item()) + tol.rtol * e.abs()
    elementwise = ((a - e).abs() / allowed).max().item()
    return max(norm, elementwise)


@dataclass
class CallResult:
    forward: float  # worst error ratio of the outputs
    backward: float  # worst error ratio of the gradients
    error: str = ""  # the exception a backend raised, if any

    @property
    def ok(self) -> bool:
        return not self.error and self.forward <= 1.0 and self.backward <= 1.0


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def check_call(s: _samples.Sample, backend: str, device: torch.device, dtype: torch.dtype,
               rng: random.Random, views: Sequence[str] = tuple(_samples.VIEWS)) -> CallResult:
    """Forward and backward of one call on ``backend`` against the float64 reference."""
    built = _samples.build(s, dtype, device, rng, views=tuple(views))
    fused_op = getattr(tdn_ops, s.op)
    try:
        outs = _as_tuple(fused_op(*built.args, backend=backend))
        g = torch.Generator().manual_seed(rng.getrandbits(31))
        grads_out = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(dtype)
                     for o in outs]
        torch.autograd.backward(outs, [go.to(device) for go in grads_out])
    except Exception as exc:  # a backend that raises on valid input is a failure, not a crash
        return CallResult(float("inf"), float("inf"), f"{type(exc).__name__}: {exc}")
    leaves64 = [leaf.detach().cpu().double().requires_grad_(True) for leaf in built.leaves]
    ref_outs = _as_tuple(getattr(reference, s.op)(*built.rebuilt(leaves64)))
    torch.autograd.backward(ref_outs, [go.double() for go in grads_out])
    forward = max((error_ratio(o, r, dtype) for o, r in zip(outs, ref_outs, strict=True)),
                  default=0.0)
    backward = 0.0
    for leaf, ref_leaf in zip(built.leaves, leaves64, strict=True):
        if leaf.grad is None or ref_leaf.grad is None:
            backward = float("inf") if (leaf.grad is None) != (ref_leaf.grad is None) \
                else backward
            continue
        backward = max(backward, error_ratio(leaf.grad, ref_leaf.grad, dtype))
    return CallResult(forward, backward)


# ------------------------------------------------------------------------------- the run

@dataclass
class Row:
    op: str
    backend: str
    dtype: str
    cases: int = 0
    forward: float = 0.0
    backward: float = 0.0
    failures: list[str] = field(default_factory=list)  # one line per failing call
    skipped: str = ""  # why this combination did not run

    @property
    def status(self) -> str:
        if self.skipped:
            return "skipped"
        return "FAIL" if self.failures else "ok"


def backend_unavailable(op: str, backend: str, device: torch.device) -> str | None:
    """Why ``backend`` cannot run ``op`` on ``device`` (None when it can)."""
    try:
        resolve_backend(op, backend, device)
    except (RuntimeError, ValueError) as exc:
        return str(exc)
    return None


def _skip_reason(op, backend, device, dtype) -> str | None:
    reason = backend_unavailable(op, backend, device)
    if reason:
        return reason
    if backend == "triton" and device.type == "cpu" and dtype == torch.bfloat16:
        return "the Triton interpreter has no bfloat16"
    return None


def run_selftest(device: torch.device, dtypes: Sequence[torch.dtype], cases: int, seed: int = 0,
                 ops: Sequence[str] = OPERATORS,
                 backends: Sequence[str] = FUSED_BACKENDS) -> list[Row]:
    """One :class:`Row` per (operator, backend, dtype); ``cases`` random calls each."""
    rows = []
    for op in ops:
        for backend in backends:
            for dtype in dtypes:
                dtype_name = str(dtype).removeprefix("torch.")
                row = Row(op, backend, dtype_name)
                rows.append(row)
                reason = _skip_reason(op, backend, device, dtype)
                if reason:
                    row.skipped = reason
                    continue
                # The same seed gives the same calls for every backend and dtype.
                rng = random.Random(f"{seed}-{op}")
                for i in range(cases):
                    s = _samples.sample(op, rng)
                    result = check_call(s, backend, device, dtype, rng)
                    row.cases += 1
                    row.forward = max(row.forward, result.forward)
                    row.backward = max(row.backward, result.backward)
                    if not result.ok:
                        why = result.error or (f"forward {result.forward:.3g}, backward "
                                               f"{result.backward:.3g} x tolerance")
                        row.failures.append(f"case {i}: {s}: {why}")
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """Rows as a fixed-width table; errors are the worst per row, in units of the tolerance."""
    header = ("operator", "backend", "dtype", "cases", "fwd err/tol", "bwd err/tol", "result")
    body = []
    for r in rows:
        if r.skipped:
            body.append((r.op, r.backend, r.dtype, "-", "-", "-", "skipped"))
        else:
            body.append((r.op, r.backend, r.dtype, str(r.cases), f"{r.forward:.3f}",
                         f"{r.backward:.3f}", r.status))
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
             for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _skip_notes(rows: Sequence[Row]) -> list[str]:
    """One line per (backend, reason) among the skipped rows."""
    seen = {}
    for r in rows:
        if r.skipped:
            seen.setdefault((r.backend, r.skipped), None)
    return [f"  {backend}: {reason}" for backend, reason in seen]


# ---------------------------------------------------------------------------------- CLI

def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tdn_ops.selftest",
        description="Compare every available backend of every tdn_ops operator with the "
                    "plain-PyTorch reference (forward and backward, random shapes and memory "
                    "layouts). Exit status: 0 all within tolerance, 1 a mismatch or an error, "
                    "2 nothing to compare.")
    parser.add_argument("--device", default="cpu",
                        help="device to test, e.g. cpu, cuda, cuda:1 (default: cpu)")
    parser.add_argument("--dtype", nargs="+", choices=sorted(DTYPES), default=list(DTYPES),
                        help="dtypes to test (default: all four)")
    parser.add_argument("--cases", type=_positive_int, default=20,
                        help="random calls per operator, backend and dtype (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random calls")
    parser.add_argument("--op", nargs="+", choices=OPERATORS, default=list(OPERATORS),
                        help="operators to test (default: all)")
    parser.add_argument("--backend", nargs="+", choices=FUSED_BACKENDS,
                        default=list(FUSED_BACKENDS),
                        help="backends to test (default: every one available)")
    return parser


def _device(parser: argparse.ArgumentParser, text: str) -> torch.device:
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu or cuda[:N], got {text!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {text}: CUDA is not available here "
                     f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'})")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        parser.error(f"--device {text}: this machine has {torch.cuda.device_count()} CUDA "
                     "device(s)")
    return device


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    device = _device(parser, args.device)
    dtypes = [DTYPES[name] for name in args.dtype]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"tdn_ops self-test on {device} ({name}), torch {torch.__version__}, "
          f"{args.cases} random call(s) per row, seed {args.seed}")
    start = time.perf_counter()
    rows = run_selftest(device, dtypes, args.cases, args.seed, args.op, args.backend)
    print(format_table(rows))
    notes = _skip_notes(rows)
    if notes:
        print("skipped:")
        print("\n".join(notes))
    failed = [r for r in rows if r.failures]
    for r in failed:
        print(f"FAIL {r.op} {r.backend} {r.dtype}:")
        for line in r.failures[:5]:
            print(f"  {line}")
        if len(r.failures) > 5:
            print(f"  ... and {len(r.failures) - 5} more")
    ran = sum(r.cases for r in rows)
    seconds = time.perf_counter() - start
    if failed:
        print(f"self-test FAILED: {len(failed)} of {len(rows)} row(s) outside tolerance "
              f"({ran} calls, {seconds:.1f} s)")
        return 1
    if not ran:
        print(f"self-test: nothing compared: no backend besides the reference runs on {device}")
        return 2
    print(f"self-test passed: {ran} calls within tolerance ({seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
