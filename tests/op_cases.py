"""Input builders for the operator tests: one place that knows each operator's arguments.

A case is an operator name plus a shape description; ``make_args`` turns it into positional
arguments (tensors and scalars) in a requested dtype and memory layout. Tests over values,
gradients, layouts and devices all draw from here, so a new shape is one line.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import tdn_ops

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
]


def cases_for(*ops: str) -> list[Case]:
    return [c for c in CASES if not ops or c.op in ops]


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
    """Positional arguments of ``case.op`` (tensors first-class, scalars as in SPEC §6)."""
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
