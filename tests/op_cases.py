"""The operator test cases and tolerances: one place that knows each operator's arguments.

A case is an operator name plus a shape description; ``make_args`` turns it into positional
arguments (tensors and scalars) in a requested dtype and memory layout. Tests over values,
gradients, layouts and backends all draw from here (and so does the CUDA host emulation,
csrc/cuda/host_emulation/check.py), so a new shape is one line.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import tdn_ops
from tdn_ops.selftest import TOLERANCE, Tolerance  # noqa: F401  (re-exported)

LAYOUTS = ("contiguous", "channels_last", "strided")


@dataclass(frozen=True)
class Case:
    op: str
    dims: tuple  # meaning depends on the operator, see make_args
    note: str = ""

    def __str__(self) -> str:
        return f"{self.op}{self.dims}{'-' + self.note if self.note else ''}"


# Odd H and W, T in {1, 2, 3, 8, 16}, channel counts that are not multiples of 8, single pixels.
CASES = [
    # (N, T, C, H, W)
    *[Case(op, d) for op in ("bidirectional_excitation", "temporal_shift_conv", "excite_shift")
      for d in ((2, 8, 16, 7, 7), (1, 3, 12, 5, 9), (3, 2, 9, 1, 1), (1, 16, 5, 3, 3),
                (2, 1, 6, 4, 3))],
    # (B, frames, c, H, W, kernel_size)
    *[Case("temporal_diff_pool", d) for d in ((4, 5, 3, 9, 7, 2), (2, 3, 5, 7, 8, 3),
                                              (3, 2, 1, 2, 2, 2), (2, 5, 3, 5, 6, 1))],
    # (N, T, c, H, W)
    *[Case("cross_segment_diff", d) for d in ((2, 8, 8, 7, 7), (1, 3, 5, 9, 4), (2, 2, 3, 2, 2),
                                              (1, 1, 4, 5, 5), (1, 16, 2, 3, 3))],
    # (lead, c, H, W, h, w): lead dims before (c, H, W)
    *[Case("multiscale_sum", d) for d in (((2, 6), 4, 7, 9, 3, 4), ((2, 4), 3, 8, 8, 4, 4),
                                          ((5,), 2, 5, 5, 2, 2), ((), 3, 6, 4, 1, 1),
                                          ((2, 3), 9, 3, 3, 1, 1))],
    # (B, C, H, W, h, w, alpha, beta)
    *[Case("lateral_fuse", d) for d in ((4, 6, 8, 8, 4, 4, 0.5, 0.5), (2, 3, 7, 5, 3, 2, 0.75, 0.25),
                                        (1, 2, 3, 3, 5, 5, 1.0, -2.0), (3, 9, 1, 1, 1, 1, 0.5, 0.5))],
    # (N, T, C, c, H, W): c = C/16 as in TDN, and other ratios, c > C included (a CPU tile
    # buffer once held C channels per pixel, too few for mixed's c)
    *[Case("project_excite_shift", d) for d in ((2, 8, 32, 2, 7, 7), (1, 3, 48, 3, 5, 9),
                                                (3, 2, 16, 1, 1, 1), (1, 16, 12, 4, 3, 3),
                                                (2, 1, 20, 5, 4, 3), (1, 2, 16, 17, 1, 1),
                                                (1, 3, 8, 20, 3, 3))],
]


# For the GPU backends besides CASES: rows (H*W or W) and channel counts that are multiples of
# 8, 4 or 2, so that the vectorised kernel paths (16-, 8- and 4-byte vectors) run in every dtype;
# medium shapes with many thread blocks; a non-integer upsampling ratio (the general
# nearest-index formula).
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
    # TDN's layer shapes (C = 64 ... 512, c = C/16), several channel blocks and pixel blocks
    *[Case("project_excite_shift", d, "vec") for d in ((2, 8, 64, 4, 14, 14),
                                                       (1, 4, 256, 16, 7, 7),
                                                       (1, 2, 512, 32, 3, 5))],
]
ALL_CASES = CASES + GPU_CASES


def cases_for(*ops: str) -> list[Case]:
    return [c for c in CASES if not ops or c.op in ops]


def first_case_of_each_operator() -> list[Case]:
    return [cases_for(op)[0] for op in tdn_ops.OPERATORS]

# The tolerances per dtype (a norm bound and an elementwise bound; results meet both) are the
# ones `python -m tdn_ops.selftest` applies on users' machines: one table, in the package.


def _tensor(shape, dtype, device, layout, generator) -> torch.Tensor:
    """A random tensor of ``shape`` in ``layout``; 'strided' is a non-contiguous slice."""
    if layout == "strided":
        wide = tuple(shape[:-1]) + (shape[-1] * 2 + 1,)
        base = torch.randn(wide, generator=generator, dtype=torch.float64)
        t = base[..., 1::2][..., : shape[-1]]
        return t.to(device=device, dtype=dtype)
    t = torch.randn(shape, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
    if layout == "channels_last" and len(shape) >= 4:
        # Channels last per 4-D (..., c, H, W) block: c becomes the innermost dim.
        perm = tuple(range(len(shape) - 3)) + (len(shape) - 2, len(shape) - 1, len(shape) - 3)
        inv = tuple(perm.index(i) for i in range(len(shape)))
        t = t.permute(perm).contiguous().permute(inv)
    return t


def make_args(case: Case, dtype=torch.float64, device="cpu", layout="contiguous", seed=0):
    """Positional arguments of ``case.op`` (tensors first-class, scalars as in docs/math.md §6)."""
    g = torch.Generator().manual_seed(seed)

    def t(shape):
        return _tensor(shape, dtype, device, layout, g)

    d = case.dims
    if case.op in ("bidirectional_excitation", "temporal_shift_conv", "excite_shift"):
        n, tt, c, h, w = d
        x = t((n * tt, c, h, w))
        weight = torch.randn((c, 1, 3), generator=g, dtype=torch.float64).to(device, dtype)
        if case.op == "bidirectional_excitation":
            return [x, t(x.shape), t(x.shape)]
        if case.op == "temporal_shift_conv":
            return [x, weight, tt]
        return [x, t(x.shape), t(x.shape), weight, tt]
    if case.op == "temporal_diff_pool":
        b, frames, c, h, w, k = d
        return [t((b, frames * c, h, w)), frames, k]
    if case.op == "cross_segment_diff":
        n, tt, c, h, w = d
        return [t((n * tt, c, h, w)), t((n * tt, c, h, w)), tt]
    if case.op == "multiscale_sum":
        lead, c, h, w, ph, pw = d
        return [t(lead + (c, h, w)), t(lead + (c, ph, pw)), t(lead + (c, h, w))]
    if case.op == "lateral_fuse":
        b, c, h, w, dh, dw, alpha, beta = d
        return [t((b, c, h, w)), t((b, c, dh, dw)), alpha, beta]
    if case.op == "project_excite_shift":
        n, tt, channels, mid, h, w = d
        weight = torch.randn((channels, 1, 3), generator=g, dtype=torch.float64).to(device, dtype)
        return [t((n * tt, channels, h, w)), t((2, n * tt, mid, h, w)), t((channels, mid)),
                t((2, channels)), t((2, channels)), weight, tt]
    raise KeyError(case.op)


def public_op(name: str):
    return getattr(tdn_ops, name)


def reference_op(name: str):
    return getattr(tdn_ops.reference, name)


def tensor_positions(args) -> list[int]:
    return [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]


def as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def with_grad(args):
    """Leaf copies of the tensor arguments that require grad (layout kept)."""
    return [a.detach().clone().requires_grad_(True) if isinstance(a, torch.Tensor) else a
            for a in args]


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """‖actual − expected‖ / max(‖expected‖, tiny), computed in float64."""
    a, e = actual.detach().double(), expected.detach().double()
    return ((a - e).norm() / e.norm().clamp_min(1e-12)).item()
