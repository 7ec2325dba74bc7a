"""The CPU upsample kernels' block shapes: planes grouped several to a block (small L-TDM maps),
one plane per block, and one plane over several blocks (large maps such as the S-TDM's
56x56 fusion), in both layouts, against the reference in float64, values and gradients.

The shared operator cases are small (their gradchecks must stay cheap), so they only reach
the first of these; the kernels choose between them by size alone."""

from __future__ import annotations

import pytest
import torch

import tdn_ops
from tdn_ops import reference

pytestmark = pytest.mark.skipif("cpu" not in tdn_ops.available_backends("cpu"),
                                reason="tdn_ops._C is not built: no CPU kernels")

# (shape of the full map, shape of the small one): grouped planes, whole planes, split planes
# (56x56 reads 28 source rows in blocks of 18), tall narrow planes, a non-doubling ratio.
SHAPES = [((2, 5, 14, 14), (2, 5, 7, 7)), ((1, 3, 40, 40), (1, 3, 20, 20)),
          ((2, 8, 56, 56), (2, 8, 28, 28)), ((1, 3, 160, 14), (1, 3, 80, 7)),
          ((1, 2, 200, 6), (1, 2, 100, 3)), ((1, 4, 57, 45), (1, 4, 19, 15))]


def _inputs(shape, channels_last, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g, dtype=torch.float64)
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("full,small", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_lateral_fuse_blocks_match_the_reference(full, small, channels_last):
    x = _inputs(full, channels_last).requires_grad_()
    d = _inputs(small, channels_last, seed=1).requires_grad_()
    g = _inputs(full, channels_last, seed=2)
    got = tdn_ops.lateral_fuse(x, d, 0.5, 0.25, backend="cpu")
    want = reference.lateral_fuse(x, d, 0.5, 0.25)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(got, (x, d), g), torch.autograd.grad(want, (x, d), g),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("full,small", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_multiscale_sum_blocks_match_the_reference(full, small):
    diff = _inputs((2,) + full, False).requires_grad_()
    pooled = _inputs((2,) + small, False, seed=1).requires_grad_()
    branch = _inputs((2,) + full, False, seed=2).requires_grad_()
    g = _inputs((2,) + full, False, seed=3)
    got = tdn_ops.multiscale_sum(diff, pooled, branch, backend="cpu")
    want = reference.multiscale_sum(diff, pooled, branch)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    inputs = (diff, pooled, branch)
    for a, b in zip(torch.autograd.grad(got, inputs, g), torch.autograd.grad(want, inputs, g),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# Exactly doubled float32 maps in the contiguous layout take the vector kernels, which are
# specialised for the source widths TDN has (7, 14, 28, 56) and take any other width at run
# time (3, 10, 20, 33 here: one and two partial vectors per row). They round every product
# and sum as the reference's separate operations do, so values and gradients match exactly.
@pytest.mark.parametrize("w", [3, 7, 10, 14, 20, 28, 33, 56])
def test_doubled_float32_kernels_equal_the_reference_exactly(w):
    g = torch.Generator().manual_seed(w)
    full, small = (3, 5, 2 * w, 2 * w), (3, 5, w, w)
    x = torch.randn(full, generator=g).requires_grad_()
    d = torch.randn(small, generator=g).requires_grad_()
    b = torch.randn(full, generator=g).requires_grad_()
    grad = torch.randn(full, generator=g)
    got = tdn_ops.lateral_fuse(x, d, 0.5, 0.25, backend="cpu")
    want = reference.lateral_fuse(x, d, 0.5, 0.25)
    assert torch.equal(got, want)
    for a, e in zip(torch.autograd.grad(got, (x, d), grad),
                    torch.autograd.grad(want, (x, d), grad), strict=True):
        assert torch.equal(a, e)
    got = tdn_ops.multiscale_sum(x, d, b, backend="cpu")
    want = reference.multiscale_sum(x, d, b)
    assert torch.equal(got, want)
    for a, e in zip(torch.autograd.grad(got, (x, d, b), grad),
                    torch.autograd.grad(want, (x, d, b), grad), strict=True):
        assert torch.equal(a, e)
