"""ltdm_mixture, the inference operator for the L-TDM's multiscale mixture: values against the
reference (its CPU kernel has a fixed-size path for c in {8, 16, 32, 64} and a generic one),
layouts, the fake kernel, argument checks, the refusal to record autograd, and its use by
LongTermTDM only where no gradient is wanted.
"""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn as nn

import tdn
import tdn_ops
from tdn_ops import reference
from tdn_ops.nn import LongTermTDM

pytestmark = pytest.mark.skipif(not tdn_ops.NATIVE_AVAILABLE,
                                reason="tdn_ops._C is not built: the CPU kernels are missing")

OP = torch.ops.tdn_ops.ltdm_mixture.default
TOLERANCE = {torch.float64: 1e-12, torch.float32: 3e-5}


def _args(n=1, t=8, c=8, h=14, w=14, dtype=torch.float64, channels_last=False, bias=True,
          seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype)

    feat = rand(n * t, c, h, w)
    if channels_last:
        feat = feat.contiguous(memory_format=torch.channels_last)
    return [feat, rand(c, 1, 3, 3), rand(c) if bias else None, rand(c, c, 3, 3, scale=c ** -0.5),
            rand(c), rand(c, c, 3, 3, scale=c ** -0.5), rand(c), t]


def _close(got, want, dtype):
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])


# ---------------------------------------------------------------------------------- values

VALUE_CASES = [
    # (c, h, w, t, n): TDN's channel counts on the fixed-size path, odd ones on the generic
    # path, odd and tiny maps (2x2 is the smallest a 2x2 pool allows), T = 1 (no neighbour).
    (8, 14, 14, 8, 1), (16, 7, 7, 8, 1), (32, 7, 9, 2, 2), (64, 3, 5, 2, 1),
    (3, 5, 6, 4, 2), (5, 2, 2, 3, 1), (8, 9, 4, 1, 3), (1, 3, 3, 2, 1),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("c,h,w,t,n", VALUE_CASES)
def test_matches_reference(c, h, w, t, n, channels_last, dtype):
    args = _args(n, t, c, h, w, dtype, channels_last, bias=c % 2 == 0)
    got = tdn_ops.ltdm_mixture(*args)
    _close(got, reference.ltdm_mixture(*args), dtype)
    # Each direction in feat's layout, as the fake kernel promises.
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert got[0].is_contiguous(memory_format=fmt)
    fake = tdn_ops.ops.ltdm_mixture._fake(*args)
    assert fake.shape == got.shape and fake.stride() == got.stride()


def test_matches_the_module_path_with_batch_norms():
    """The module's eval-mode mixture through the kernel (batch norms folded on the fly) equals
    its six-operator path in float64."""
    torch.manual_seed(0)
    mod = LongTermTDM(128, num_segments=4).double().eval()
    _randomise_batch_norms(mod)
    x = torch.randn(8, 128, 6, 10, dtype=torch.float64)
    with torch.no_grad():
        fused = mod.mixture(x)
    with torch.enable_grad():
        composite = mod.mixture(x)            # parameters require grad: the six operators
    assert composite.requires_grad and not fused.requires_grad
    _close(fused, composite.detach(), torch.float64)


def test_non_finite_weights_propagate_like_the_reference():
    # The kernel skips the convolutions of the all-zero difference frames only while every
    # weight is finite (0 * inf is NaN in the reference too).
    args = _args(c=8, h=4, w=4, t=3)
    args[5] = args[5].clone()
    args[5][0, 0, 1, 1] = float("inf")
    got, want = OP(*args), reference.ltdm_mixture(*args)
    assert torch.equal(got.isnan(), want.isnan()) and got.isnan().any()
    finite = ~want.isnan()
    torch.testing.assert_close(got[finite], want[finite], rtol=1e-12, atol=1e-12)


def test_independent_of_thread_count():
    args = _args(n=2, c=16, h=9, w=7, dtype=torch.float32)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = OP(*args)
        torch.set_num_threads(max(2, before))
        many = OP(*args)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, many)


# ----------------------------------------------------------------------- PyTorch's view of it

@pytest.mark.parametrize("channels_last", [False, True])
def test_opcheck(channels_last):
    args = _args(c=8, h=5, w=6, t=2, dtype=torch.float32, channels_last=channels_last)
    torch.library.opcheck(OP, args, test_utils=("test_schema", "test_faketensor"))


def test_compiles_fullgraph():
    args = _args(c=8, h=5, w=6, t=2, dtype=torch.float32)
    compiled = torch.compile(lambda *a: tdn_ops.ltdm_mixture(*a), fullgraph=True,
                             backend="aot_eager")
    with torch.no_grad():
        _close(compiled(*args), reference.ltdm_mixture(*args), torch.float32)


# ----------------------------------------------------------------------------- bad input

def _bad(index, value):
    args = _args(c=8, h=4, w=4, t=2, dtype=torch.float32)
    args[index] = value
    return args


BAD_CALLS = [
    ("feat", _bad(0, torch.randn(4, 8, 4)), ValueError, "feat must be a 4-D tensor"),
    ("feat", _bad(0, torch.randn(4, 8, 4, 4, dtype=torch.float16)), TypeError,
     "feat must be float32 or float64"),
    ("num_segments", _bad(7, 3), ValueError, r"feat.shape\[0\] \(2\) must be N\*T"),
    ("num_segments", _bad(7, True), TypeError, "num_segments must be an int"),
    ("feat", _bad(0, torch.randn(2, 8, 1, 4)), ValueError, "below the 2x2 pooling window"),
    ("align_weight", _bad(1, torch.randn(8, 8, 3, 3)), ValueError,
     r"align_weight must have shape \(8, 1, 3, 3\)"),
    ("align_bias", _bad(2, torch.randn(4)), ValueError, r"align_bias must have shape \(8,\)"),
    ("pooled_weight", _bad(3, torch.randn(8, 8, 1, 1)), ValueError,
     r"pooled_weight must have shape \(8, 8, 3, 3\)"),
    ("full_bias", _bad(6, torch.randn(8, dtype=torch.float64)), TypeError,
     "full_bias has dtype torch.float64 but feat"),
    ("pooled_bias", _bad(4, "bias"), TypeError, "pooled_bias must be a torch.Tensor"),
]


@pytest.mark.parametrize("name,args,error,match", BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
def test_bad_input_names_the_argument(name, args, error, match):
    with pytest.raises(error, match=match):
        tdn_ops.ltdm_mixture(*args)


def test_native_checks_guard_a_direct_call():
    args = _bad(3, torch.randn(8, 8, 1, 1))
    with pytest.raises(RuntimeError, match=r"pooled_weight must have shape \(c, c, 3, 3\)"):
        OP(*args)
    with pytest.raises(RuntimeError, match="feat must be float32 or float64"):
        OP(*_bad(0, torch.randn(2, 8, 4, 4, dtype=torch.bfloat16)))


def test_refuses_to_record_autograd():
    args = _args(c=8, h=4, w=4, t=2)
    args[3] = args[3].requires_grad_()
    with pytest.raises(RuntimeError, match="ltdm_mixture has no backward"):
        tdn_ops.ltdm_mixture(*args)
    with torch.no_grad():
        tdn_ops.ltdm_mixture(*args)          # fine: nothing is recorded


def test_no_triton_kernel():
    with pytest.raises(RuntimeError, match="backend='triton' for ltdm_mixture is not available"):
        tdn_ops.ltdm_mixture(*_args(c=8, h=4, w=4, t=2), backend="triton")


def test_reference_backend_and_cuda_fall_back_to_the_reference():
    args = _args(c=8, h=4, w=4, t=2)
    _close(tdn_ops.ltdm_mixture(*args, backend="reference"), OP(*args), torch.float64)
    from tdn_ops._dispatch import resolve_backend
    assert resolve_backend("ltdm_mixture", "auto", torch.device("cuda")) == "reference"


# ------------------------------------------------------------------- where the module uses it

def _randomise_batch_norms(module):
    gen = torch.Generator().manual_seed(1)
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            with torch.no_grad():
                for t, lo, hi in ((bn.running_mean, -0.2, 0.2), (bn.running_var, 0.5, 1.5),
                                  (bn.weight, 0.5, 1.5), (bn.bias, -0.2, 0.2)):
                    t.copy_(torch.rand(t.shape, generator=gen, dtype=t.dtype) * (hi - lo) + lo)


def _count_kernel_calls(monkeypatch):
    calls = []
    import tdn_ops.nn as tnn

    real = tnn.ltdm_mixture

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tnn, "ltdm_mixture", counting)
    return calls


@pytest.mark.parametrize("mode", ["training", "grad enabled", "float16 input", "reference"])
def test_module_takes_the_differentiable_path_when_needed(mode, monkeypatch):
    calls = _count_kernel_calls(monkeypatch)
    mod = LongTermTDM(64, num_segments=2, backend="reference" if mode == "reference" else None)
    mod.train(mode == "training")
    x = torch.randn(4, 64, 4, 4)
    if mode == "float16 input":
        mod, x = mod.half(), x.half()
    context = torch.no_grad() if mode in ("float16 input", "reference") else torch.enable_grad()
    with context:
        mod(x)
    assert calls == []


def test_module_uses_it_in_eval_without_grad(monkeypatch):
    calls = _count_kernel_calls(monkeypatch)
    mod = LongTermTDM(64, num_segments=2).eval()
    with torch.no_grad():
        mod(torch.randn(4, 64, 4, 4))
    with torch.inference_mode():
        mod(torch.randn(4, 64, 4, 4))
    assert len(calls) == 2


def _compiled_targets(module, x, grad: bool):
    """The operators torch.compile's graph of ``module(x)`` calls, and its output."""
    targets = set()

    def record(gm, example_inputs):
        targets.update(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    torch._dynamo.reset()
    with torch.set_grad_enabled(grad):
        out = torch.compile(module, backend=record, fullgraph=True)(x)
    torch._dynamo.reset()
    return targets, out


def test_compiled_module_uses_it_in_eval_without_grad():
    """torch.compile of an eval-mode L-TDM with nothing to differentiate keeps the inference
    operator in its graph (it guards on grad mode), and computes what the eager module does."""
    torch.manual_seed(0)
    mod = LongTermTDM(64, num_segments=2).eval()
    _randomise_batch_norms(mod)
    x = torch.randn(4, 64, 5, 6)
    targets, out = _compiled_targets(mod, x, grad=False)
    assert any("ltdm_mixture" in t for t in targets)
    assert not any("multiscale_sum" in t for t in targets)
    with torch.no_grad():
        torch.testing.assert_close(out, mod(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["training", "grad enabled"])
def test_compiled_module_takes_the_differentiable_path_when_needed(mode):
    mod = LongTermTDM(64, num_segments=2).train(mode == "training")
    targets, _ = _compiled_targets(mod, torch.randn(4, 64, 4, 4), grad=True)
    assert not any("ltdm_mixture" in t for t in targets)
    assert any("multiscale_sum" in t for t in targets)


@pytest.mark.parametrize("depth,segments,channels_last",
                         list(itertools.product((18, 50), (1, 8), (False, True)))[::3] +
                         [(50, 8, True)])
def test_model_logits_match_the_differentiable_path(depth, segments, channels_last):
    """A whole TDN in eval mode, float64: the inference operator changes no logit (unfolded,
    and folded the way pack_for_cpu_inference folds)."""
    torch.manual_seed(0)
    model = tdn.build_model(f"tdn_resnet{depth}", num_classes=5, num_segments=segments)
    model = model.double().eval()
    _randomise_batch_norms(model)
    x = torch.randn(1, segments * 15, 64, 64, dtype=torch.float64)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    with torch.enable_grad():
        want = model(x).detach()
    with torch.no_grad():
        got = model(x)
        folded = tdn.fold_batch_norm(copy.deepcopy(model))(x)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(folded, want, rtol=1e-9, atol=1e-9)


def test_torch_export_sees_the_differentiable_operators():
    """Non-strict torch.export runs the module's Python eagerly: even with nothing to
    differentiate the program must hold the six portable operators, not the CPU-only one."""
    mod = LongTermTDM(64, num_segments=2).eval().requires_grad_(False)
    x = torch.randn(4, 64, 4, 4)
    with torch.no_grad():
        program = torch.export.export(mod, (x,), strict=False)
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not any("ltdm_mixture" in t for t in targets)
    assert any("multiscale_sum" in t for t in targets)
