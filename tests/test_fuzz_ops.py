"""Fuzz: every operator on random shapes, memory views and dtypes against the reference.

Each (target, operator) draws seeded random calls from tdn_ops._samples: shapes with odd and
vector-friendly sizes; each tensor argument contiguous, channels-last, strided, at a storage
offset, expanded (stride 0) or transposed; float32/float16/bfloat16/float64. Forward and
backward are compared with the float64 reference by tdn_ops.selftest.check_call (the check a
user runs with ``python -m tdn_ops.selftest``). The operator list is tdn_ops.OPERATORS, so an
operator added there is fuzzed as soon as it has a sampler (test_selftest checks it has one).

About 320 calls run by default in seconds; ``TDN_FUZZ_CASES=5000`` runs that many per
target (the interpreted Triton target gets a twentieth), ``TDN_FUZZ_SEED`` changes the draw.
A failure names the call, the views and the seed to reproduce it.
"""

from __future__ import annotations

import os
import random

import pytest
import torch

import tdn_ops
from op_targets import TARGETS, Target, target_params
from tdn_ops import _samples
from tdn_ops.selftest import check_call

CASES = int(os.environ.get("TDN_FUZZ_CASES", "320"))
SEED = int(os.environ.get("TDN_FUZZ_SEED", "0"))
ALL_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _budget(target: Target) -> int:
    """Calls per operator on ``target``; the interpreter runs ~100x slower than the kernels."""
    per_op = max(1, CASES // len(tdn_ops.OPERATORS))
    return max(1, per_op // 20) if target.interpreted else per_op


def _dtypes(target: Target):
    # The Triton interpreter (numpy) has no bfloat16.
    return tuple(d for d in ALL_DTYPES if not (target.interpreted and d == torch.bfloat16))


@pytest.mark.parametrize("target", target_params(TARGETS))
@pytest.mark.parametrize("op", tdn_ops.OPERATORS)
def test_random_calls_match_reference(target, op):
    rng = random.Random(f"{SEED}-{target.name}-{op}")
    dtypes = _dtypes(target)
    failures = []
    for i in range(_budget(target)):
        s = _samples.sample(op, rng)
        dtype = rng.choice(dtypes)
        # The views are drawn inside check_call from this rng: record its state to replay.
        state = rng.getstate()
        result = check_call(s, target.backend, torch.device(target.device), dtype, rng)
        if not result.ok:
            replay = random.Random()
            replay.setstate(state)
            views = _samples.build(s, dtype, "cpu", replay,
                                   views=tuple(_samples.VIEWS), requires_grad=False).views
            why = result.error or (f"error {result.forward:.3g} (forward), "
                                   f"{result.backward:.3g} (backward) x tolerance")
            failures.append(f"call {i}: {s} {dtype} views={views}: {why}")
    assert not failures, (f"{len(failures)} failing call(s) of {op} on {target} "
                          f"(TDN_FUZZ_SEED={SEED}):\n" + "\n".join(failures[:10]))


def test_fuzz_covers_every_view_and_dtype():
    # The draw is not degenerate: over the default budget every view and dtype occurs.
    rng = random.Random(SEED)
    views, dtypes = set(), set()
    for op in tdn_ops.OPERATORS:
        for _ in range(_budget(TARGETS[0])):
            s = _samples.sample(op, rng)
            dtypes.add(rng.choice(ALL_DTYPES))
            views.update(_samples.build(s, torch.float32, "cpu", rng,
                                        views=tuple(_samples.VIEWS), requires_grad=False).views)
    assert views == set(_samples.VIEWS)
    assert dtypes == set(ALL_DTYPES)


def test_views_keep_the_values_and_change_the_strides():
    rng = random.Random(1)
    shape = (4, 3, 5, 6)
    seen_strides = set()
    for name, view in _samples.VIEWS.items():
        leaf = torch.randn(view.storage_shape(shape, rng), dtype=torch.float64)
        t = view.view(leaf, shape)
        assert tuple(t.shape) == shape, name
        seen_strides.add((t.stride(), t.storage_offset()))
        if name == "expanded":
            assert 0 in t.stride()
        if name == "offset":
            assert t.storage_offset() > 0
        if name in ("strided", "transposed", "channels_last", "expanded"):
            assert not t.is_contiguous(), name
    assert len(seen_strides) == len(_samples.VIEWS)
