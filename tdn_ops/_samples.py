"""Random valid arguments for every operator: shapes, scalars and memory views.

:func:`sample` draws one call of an operator (tensor shapes and scalar arguments) from a
``random.Random``; :func:`build` turns it into tensors in a dtype, each argument seen through a
view (:data:`VIEWS`: contiguous, channels-last, strided, storage offset, expanded, transposed)
of a leaf tensor that collects its gradient. The self-test (:mod:`tdn_ops.selftest`) and the
fuzz test draw from here, so an operator added to :data:`tdn_ops.OPERATORS` needs a sampler in
:data:`SAMPLERS` (tests/test_selftest.py fails until it has one).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ._operators import OPERATORS

__all__ = ["SAMPLERS", "VIEWS", "Built", "Sample", "Shape", "build", "sample"]


@dataclass(frozen=True)
class Shape:
    """A tensor argument's shape (anything else in a sample is passed as is)."""

    dims: tuple[int, ...]


@dataclass(frozen=True)
class Sample:
    op: str
    args: tuple  # Shape for tensors, plain values for scalars

    def __str__(self) -> str:
        parts = [str(a.dims) if isinstance(a, Shape) else repr(a) for a in self.args]
        return f"{self.op}({', '.join(parts)})"


# Sizes mix odd values with multiples of 4, 8 and 16, so that the kernels' vector paths and
# their scalar tails both run.
_CHANNELS = (1, 2, 3, 5, 8, 9, 16, 17, 24)
_SPATIAL = (1, 2, 3, 4, 5, 7, 8)
_SEGMENTS = (1, 2, 3, 4, 8)


def _video(rng: random.Random) -> tuple[int, int, int, int, int]:
    """(N, T, C, H, W) of a small batch of videos."""
    return (rng.randint(1, 3), rng.choice(_SEGMENTS), rng.choice(_CHANNELS),
            rng.choice(_SPATIAL), rng.choice(_SPATIAL))


def _temporal_diff_pool(rng):
    k = rng.choice((1, 2, 2, 3))
    frames = rng.randint(2, 5)
    h, w = rng.randint(k, 9), rng.randint(k, 9)
    return (Shape((rng.randint(1, 3), frames * rng.choice((1, 2, 3, 5)), h, w)), frames, k)


def _cross_segment_diff(rng):
    n, t, c, _, _ = _video(rng)
    shape = Shape((n * t, c, rng.randint(2, 9), rng.randint(2, 9)))
    return (shape, shape, t)


def _multiscale_sum(rng):
    lead = tuple(rng.randint(1, 4) for _ in range(rng.randint(0, 2)))
    c, h, w = rng.choice(_CHANNELS), rng.randint(1, 9), rng.randint(1, 9)
    full = Shape(lead + (c, h, w))
    return (full, Shape(lead + (c, rng.randint(1, 5), rng.randint(1, 5))), full)


def _bidirectional_excitation(rng):
    n, t, c, h, w = _video(rng)
    shape = Shape((n * t, c, h, w))
    return (shape, shape, shape)


def _temporal_shift_conv(rng):
    n, t, c, h, w = _video(rng)
    return (Shape((n * t, c, h, w)), Shape((c, 1, 3)), t)


def _excite_shift(rng):
    n, t, c, h, w = _video(rng)
    shape = Shape((n * t, c, h, w))
    return (shape, shape, shape, Shape((c, 1, 3)), t)


def _lateral_fuse(rng):
    b, c = rng.randint(1, 4), rng.choice(_CHANNELS)
    scalars = (rng.choice((0.5, 0.75, 1.0, -2.0)), rng.choice((0.5, 0.25, 1.5, -1.0)))
    return (Shape((b, c, rng.randint(1, 9), rng.randint(1, 9))),
            Shape((b, c, rng.randint(1, 6), rng.randint(1, 6)))) + scalars


def _project_excite_shift(rng):
    n, t, _, h, w = _video(rng)
    mid = rng.randint(1, 5)
    channels = mid * rng.choice((1, 3, 8, 16))
    return (Shape((n * t, channels, h, w)), Shape((2, n * t, mid, h, w)),
            Shape((channels, mid)), Shape((2, channels)), Shape((2, channels)),
            Shape((channels, 1, 3)), t)


SAMPLERS: dict[str, Callable[[random.Random], tuple]] = {
    "temporal_diff_pool": _temporal_diff_pool,
    "cross_segment_diff": _cross_segment_diff,
    "multiscale_sum": _multiscale_sum,
    "bidirectional_excitation": _bidirectional_excitation,
    "temporal_shift_conv": _temporal_shift_conv,
    "excite_shift": _excite_shift,
    "lateral_fuse": _lateral_fuse,
    "project_excite_shift": _project_excite_shift,
}


def sample(op: str, rng: random.Random) -> Sample:
    """One random valid call of ``op``."""
    if op not in OPERATORS:
        raise ValueError(f"op must be one of {OPERATORS}, got {op!r}")
    if op not in SAMPLERS:
        raise KeyError(f"no argument sampler for operator {op!r}: add one to "
                       "tdn_ops._samples.SAMPLERS")
    return Sample(op, SAMPLERS[op](rng))


# ------------------------------------------------------------------------------------ views
#
# A view maps a leaf tensor (the storage, which receives the gradient) to the argument the
# operator sees. `storage_shape(shape, rng)` says which leaf to allocate; `view(leaf, shape)`
# returns a tensor of `shape` over it.

@dataclass(frozen=True)
class View:
    name: str
    storage_shape: Callable[[tuple, random.Random], tuple]
    view: Callable[[torch.Tensor, tuple], torch.Tensor]


def _channels_last_perm(ndim: int) -> tuple[int, ...]:
    # (..., c, H, W) stored as (..., H, W, c).
    return tuple(range(ndim - 3)) + (ndim - 2, ndim - 1, ndim - 3)


def _cl_storage(shape, rng):
    return tuple(shape[i] for i in _channels_last_perm(len(shape))) if len(shape) >= 3 else shape


def _cl_view(leaf, shape):
    if len(shape) < 3:
        return leaf
    perm = _channels_last_perm(len(shape))
    return leaf.permute(tuple(perm.index(i) for i in range(len(shape))))


def _expanded_storage(shape, rng):
    # One dim of size 1 in the storage, broadcast (stride 0) to the full size.
    dims = [i for i, s in enumerate(shape) if s > 1]
    if not dims:
        return shape
    i = rng.choice(dims)
    return shape[:i] + (1,) + shape[i + 1:]


def _transposed_storage(shape, rng):
    return shape[:-2] + (shape[-1], shape[-2]) if len(shape) >= 2 else shape


def _transposed_view(leaf, shape):
    return leaf.transpose(-1, -2) if len(shape) >= 2 else leaf


VIEWS: dict[str, View] = {v.name: v for v in (
    View("contiguous", lambda s, rng: s, lambda leaf, s: leaf),
    View("channels_last", _cl_storage, _cl_view),
    # Every other element of a wider last dim: non-contiguous, no dense layout.
    View("strided", lambda s, rng: s[:-1] + (2 * s[-1] + 1,),
         lambda leaf, s: leaf[..., 1::2][..., : s[-1]]),
    # A few elements into a flat buffer: a storage offset that breaks vector alignment.
    View("offset", lambda s, rng: (rng.randint(1, 3) + _numel(s),),
         lambda leaf, s: leaf[leaf.numel() - _numel(s):].view(s)),
    View("expanded", _expanded_storage, lambda leaf, s: leaf.expand(s)),
    View("transposed", _transposed_storage, _transposed_view),
)}


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


@dataclass
class Built:
    """The positional arguments of one call and the leaves behind its tensor arguments."""

    args: list
    leaves: list[torch.Tensor]  # one per tensor argument, in order
    views: list[str]  # the view of each tensor argument over its leaf
    shapes: list[tuple]  # each tensor argument's shape

    def rebuilt(self, leaves: list[torch.Tensor]) -> list:
        """The same call over other leaves of the same shapes (e.g. float64 copies)."""
        it = iter(zip(leaves, self.shapes, self.views, strict=True))
        out = []
        for a in self.args:
            if isinstance(a, torch.Tensor):
                leaf, shape, view = next(it)
                out.append(VIEWS[view].view(leaf, shape))
            else:
                out.append(a)
        return out


def build(s: Sample, dtype: torch.dtype, device, rng: random.Random,
          views: tuple[str, ...] | None = None, generator: torch.Generator | None = None,
          requires_grad: bool = True) -> Built:
    """Tensors for sample ``s``: standard-normal values (drawn in float64, then rounded to
    ``dtype``), each argument through a view picked from ``views`` (default: contiguous)."""
    views = views or ("contiguous",)
    g = generator or torch.Generator().manual_seed(rng.getrandbits(31))
    args, leaves, names, shapes = [], [], [], []
    for a in s.args:
        if not isinstance(a, Shape):
            args.append(a)
            continue
        name = rng.choice(views)
        view = VIEWS[name]
        leaf = torch.randn(view.storage_shape(a.dims, rng), generator=g, dtype=torch.float64)
        leaf = leaf.to(device=device, dtype=dtype).requires_grad_(requires_grad)
        args.append(view.view(leaf, a.dims))
        leaves.append(leaf)
        names.append(name)
        shapes.append(a.dims)
    return Built(args, leaves, names, shapes)
