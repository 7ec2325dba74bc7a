"""tdn_ops.nn layers: fused path == the authors' code path (reference backend), BN semantics,
initialisation, parameter names and input errors."""

from __future__ import annotations

import copy

import pytest
import torch

from tdn_ops import reference
from tdn_ops.nn import (FrameDifferencePool, LateralFusion, LongTermTDM, TemporalShift,
                        long_term_tdm_shift)

LTDM_KEYS = {f"{m}.{p}" for m in ("conv1", "conv2", "conv3", "conv3_smallscale2",
                                    "conv3_smallscale4") for p in ("weight",)} | {
    f"{bn}.{p}" for bn in ("bn1", "bn3", "bn3_smallscale2", "bn3_smallscale4")
    for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN affine/statistics and shift weights, so that every path matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            noise = torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t.dtype)
            if name.endswith("running_var"):
                t.copy_(noise.abs() + 0.5)
            else:
                t.copy_(noise * (0.3 if "conv" in name else 1.0))


def _pair(module: torch.nn.Module, **kwargs):
    fused = module(**kwargs)
    ref = module(**kwargs, backend="reference")
    _randomise(fused)
    ref.load_state_dict(fused.state_dict())
    return fused, ref


def _input(nt, c, h, w, channels_last=False, dtype=torch.float64, seed=1):
    x = torch.randn(nt, c, h, w, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    return x.requires_grad_()


def _grads(module, x, out):
    weight = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(9))
    params = [p for p in module.parameters()]
    return torch.autograd.grad((out * weight).sum(), [x] + params)


def test_ltdm_parameter_names_match_the_authors():
    assert set(LongTermTDM(64, 8).state_dict()) == LTDM_KEYS


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("num_segments,spatial", [(1, (6, 6)), (3, (7, 5)), (4, (8, 8))])
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_ltdm_fused_equals_reference(training, num_segments, spatial, channels_last):
    fused, ref = _pair(LongTermTDM, channels=32, num_segments=num_segments)
    fused.double().train(training)
    ref.double().train(training)
    x = _input(2 * num_segments, 32, *spatial, channels_last)
    out_f, out_r = fused(x), ref(x)
    torch.testing.assert_close(out_f, out_r, rtol=1e-10, atol=1e-10)
    for g_f, g_r in zip(_grads(fused, x, out_f), _grads(ref, x, out_r), strict=True):
        torch.testing.assert_close(g_f, g_r, rtol=1e-9, atol=1e-10)
    # Running statistics follow the same per-direction updates.
    for (name, a), b in zip(fused.state_dict().items(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)


def test_ltdm_training_updates_each_shared_bn_once_per_direction():
    ltdm = LongTermTDM(32, 4).train()
    _randomise(ltdm)
    before = copy.deepcopy(ltdm.state_dict())
    x = torch.randn(8, 32, 6, 6)
    ltdm(x)
    counts = {k: int(v - before[k]) for k, v in ltdm.state_dict().items()
              if k.endswith("num_batches_tracked")}
    assert counts == {"bn1.num_batches_tracked": 1, "bn3.num_batches_tracked": 2,
                      "bn3_smallscale2.num_batches_tracked": 2,
                      "bn3_smallscale4.num_batches_tracked": 2}
    # Two momentum updates, forward direction first, each with its own batch statistics.
    with torch.no_grad():
        ref = LongTermTDM(32, 4, backend="reference").train()
        ref.load_state_dict(before)
        b = ref.bn1(ref.conv1(x))
        y_fwd_raw, y_bwd_raw = _raw_conv3_outputs(ref, b)
    m = ltdm.bn3.momentum
    mean = before["bn3.running_mean"]
    for raw in (y_fwd_raw, y_bwd_raw):
        mean = (1 - m) * mean + m * raw.mean(dim=(0, 2, 3))
    torch.testing.assert_close(ltdm.bn3.running_mean, mean, rtol=1e-5, atol=1e-6)


def _raw_conv3_outputs(ltdm, b):
    # conv3 inputs of both directions, recomputed with the training-mode batch norms.
    t = ltdm.num_segments
    cb = ltdm.conv2(b)
    diff, pooled = reference.cross_segment_diff(b, cb, t)
    outs = []
    for d, p in zip(diff, pooled, strict=True):
        s2 = torch.nn.functional.batch_norm(ltdm.conv3_smallscale2(p), None, None,
                                            ltdm.bn3_smallscale2.weight,
                                            ltdm.bn3_smallscale2.bias, training=True)
        s4 = torch.nn.functional.batch_norm(ltdm.conv3_smallscale4(d), None, None,
                                            ltdm.bn3_smallscale4.weight,
                                            ltdm.bn3_smallscale4.bias, training=True)
        outs.append(ltdm.conv3(reference.multiscale_sum(d, s2, s4)))
    return outs


def test_ltdm_forward_is_the_excitation_of_its_logits():
    ltdm = LongTermTDM(16, 2).eval()
    _randomise(ltdm)
    x = torch.randn(4, 16, 5, 5)
    y_fwd, y_bwd = ltdm.excitation_logits(x)
    expected = x * (0.5 + 0.5 * torch.sigmoid(y_fwd) + 0.5 * torch.sigmoid(y_bwd))
    torch.testing.assert_close(ltdm(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels", [8, 12, 16, 64])
def test_temporal_shift_initialisation_is_tsm(channels):
    shift = TemporalShift(channels, 8)
    assert set(shift.state_dict()) == {"conv.weight"}
    w = shift.conv.weight
    assert w.shape == (channels, 1, 3) and w.requires_grad
    fold = channels // 8
    expected = torch.zeros(channels, 1, 3)
    expected[:fold, 0, 2] = 1
    expected[fold:2 * fold, 0, 0] = 1
    expected[2 * fold:, 0, 1] = 1
    assert torch.equal(w.detach(), expected)


@pytest.mark.parametrize("num_segments", [1, 3, 8])
def test_temporal_shift_matches_the_formula_and_reference(num_segments):
    fused, ref = _pair(TemporalShift, channels=8, num_segments=num_segments)
    fused.double(), ref.double()
    x = _input(2 * num_segments, 8, 3, 4)
    w = fused.conv.weight.detach()
    x5 = x.detach().view(2, num_segments, 8, 3, 4)
    padded = torch.nn.functional.pad(x5, (0, 0, 0, 0, 0, 0, 1, 1))
    expected = sum(w[:, 0, k].view(1, 1, 8, 1, 1) * padded[:, k:k + num_segments]
                   for k in range(3)).reshape(x.shape)
    out_f, out_r = fused(x), ref(x)
    torch.testing.assert_close(out_f, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out_r, expected, rtol=1e-12, atol=1e-12)
    for g_f, g_r in zip(_grads(fused, x, out_f), _grads(ref, x, out_r), strict=True):
        torch.testing.assert_close(g_f, g_r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_fused_tdm_shift_equals_shift_of_ltdm(training):
    ltdm_f, ltdm_r = _pair(LongTermTDM, channels=32, num_segments=4)
    shift_f, shift_r = _pair(TemporalShift, channels=32, num_segments=4)
    for m in (ltdm_f, ltdm_r, shift_f, shift_r):
        m.double().train(training)
    x = _input(8, 32, 7, 7, channels_last=True)
    out_f = long_term_tdm_shift(ltdm_f, shift_f, x)
    out_r = long_term_tdm_shift(ltdm_r, shift_r, x)
    torch.testing.assert_close(out_f, shift_r(ltdm_r(x)), rtol=1e-10, atol=1e-10)
    weight = torch.randn(out_f.shape, dtype=out_f.dtype)
    params_f = [x] + list(ltdm_f.parameters()) + [shift_f.conv.weight]
    params_r = [x] + list(ltdm_r.parameters()) + [shift_r.conv.weight]
    grads_f = torch.autograd.grad((out_f * weight).sum(), params_f)
    grads_r = torch.autograd.grad((out_r * weight).sum(), params_r)
    for g_f, g_r in zip(grads_f, grads_r, strict=True):
        torch.testing.assert_close(g_f, g_r, rtol=1e-9, atol=1e-10)


def test_stdm_pieces_equal_reference():
    x = torch.randn(4, 15, 9, 10)
    torch.testing.assert_close(FrameDifferencePool()(x),
                               FrameDifferencePool(backend="reference")(x))
    fused, ref = LateralFusion(0.75, 0.25), LateralFusion(0.75, 0.25, backend="reference")
    feats, motion = torch.randn(4, 8, 14, 14), torch.randn(4, 8, 7, 7)
    torch.testing.assert_close(fused(feats, motion), ref(feats, motion))
    torch.testing.assert_close(ref(feats, motion), 0.75 * feats + 0.25 * motion.repeat_interleave(
        2, -1).repeat_interleave(2, -2))


@pytest.mark.parametrize("make,match", [
    (lambda: LongTermTDM(24, 8), "multiple of reduction"),
    (lambda: LongTermTDM(32, 0), "num_segments"),
    (lambda: TemporalShift(32, 8, backend="gpu"), "backend"),
])
def test_bad_construction_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("layer", [LongTermTDM(32, 4), TemporalShift(32, 4)],
                         ids=["ltdm", "shift"])
@pytest.mark.parametrize("shape", [(8, 16, 6, 6), (6, 32, 6, 6), (32, 6, 6)])
def test_bad_input_names_the_expected_shape(layer, shape):
    with pytest.raises(ValueError, match=r"expects \(N\*T, C, H, W\) with C=32"):
        layer(torch.randn(shape))


def test_mismatched_segments_between_ltdm_and_shift():
    with pytest.raises(ValueError, match="num_segments"):
        long_term_tdm_shift(LongTermTDM(32, 4), TemporalShift(32, 8), torch.randn(8, 32, 4, 4))


# Eval mode without autograd: long_term_tdm_shift keeps the weights' derived arguments in a plan
# (tdn_ops/nn.py, _inference_plan). Whatever changes the weights afterwards must be seen.
def _inference_case(dtype=torch.float32):
    ltdm_f, ltdm_r = _pair(LongTermTDM, channels=32, num_segments=4)
    shift_f, shift_r = _pair(TemporalShift, channels=32, num_segments=4)
    mods = (ltdm_f, ltdm_r, shift_f, shift_r)
    for m in mods:
        m.to(dtype).eval()
    x = _input(8, 32, 7, 7, channels_last=True, dtype=dtype).detach()
    return ltdm_f, shift_f, ltdm_r, shift_r, x


def _check_plan_output(ltdm_f, shift_f, ltdm_r, shift_r, x, tol=2e-5):
    with torch.inference_mode():
        got = long_term_tdm_shift(ltdm_f, shift_f, x)
    with torch.no_grad():
        want = shift_r(ltdm_r(x))
        again = long_term_tdm_shift(ltdm_f, shift_f, x)   # no_grad: a plan of its own
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    torch.testing.assert_close(again, want, rtol=tol, atol=tol)


def test_inference_plan_follows_every_change_of_the_weights():
    ltdm_f, shift_f, ltdm_r, shift_r, x = _inference_case()
    _check_plan_output(ltdm_f, shift_f, ltdm_r, shift_r, x)
    # In-place updates (an optimiser step, load_state_dict) of a weight and of a buffer.
    with torch.no_grad():
        for m in (ltdm_f, ltdm_r):
            m.conv3.weight.mul_(-2.0)
            m.bn3_smallscale2.running_mean.add_(0.5)
        shift_f.conv.weight.add_(0.25)
        shift_r.conv.weight.add_(0.25)
    _check_plan_output(ltdm_f, shift_f, ltdm_r, shift_r, x)
    # A state dict loaded from elsewhere.
    other_f, other_r = _pair(LongTermTDM, channels=32, num_segments=4)
    ltdm_f.load_state_dict(other_f.state_dict())
    ltdm_r.load_state_dict(other_f.state_dict())
    _check_plan_output(ltdm_f, shift_f, ltdm_r, shift_r, x)
    # A replaced parameter, a replaced submodule, and data swapped under the same parameter.
    new_weight = torch.randn_like(ltdm_f.conv2.weight)
    ltdm_f.conv2.weight = torch.nn.Parameter(new_weight.clone())
    ltdm_r.conv2.weight = torch.nn.Parameter(new_weight.clone())
    _check_plan_output(ltdm_f, shift_f, ltdm_r, shift_r, x)
    bn = torch.nn.BatchNorm2d(32).eval()
    _randomise(bn, seed=5)
    ltdm_f.bn3, ltdm_r.bn3 = copy.deepcopy(bn), copy.deepcopy(bn)
    _check_plan_output(ltdm_f, shift_f, ltdm_r, shift_r, x)
    data = torch.randn_like(ltdm_f.conv3_smallscale4.weight)
    ltdm_f.conv3_smallscale4.weight.data = data.clone()
    ltdm_r.conv3_smallscale4.weight.data = data.clone()
    _check_plan_output(ltdm_f, shift_f, ltdm_r, shift_r, x)


def test_inference_plan_is_not_used_where_the_data_matter():
    ltdm_f, shift_f, ltdm_r, shift_r, x = _inference_case()
    _check_plan_output(ltdm_f, shift_f, ltdm_r, shift_r, x)
    # One batch norm back in training mode normalises with the batch's statistics and updates
    # its running ones: both models must do so.
    ltdm_f.bn3.train()
    ltdm_r.bn3.train()
    with torch.no_grad():
        got = long_term_tdm_shift(ltdm_f, shift_f, x)
        want = shift_r(ltdm_r(x))
    torch.testing.assert_close(got, want, rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(ltdm_f.bn3.running_mean, ltdm_r.bn3.running_mean)
    # Converted to float64 (which keeps each Parameter object and its version): float64 in,
    # float64 weights used; float32 in now fails as the unplanned path does.
    ltdm_f.bn3.eval()
    ltdm_r.bn3.eval()
    ltdm_r.load_state_dict(ltdm_f.state_dict())   # the updates agree to float32 rounding only
    for m in (ltdm_f, shift_f, ltdm_r, shift_r):
        m.double()
    _check_plan_output(ltdm_f, shift_f, ltdm_r, shift_r, x.double(), tol=1e-10)
    with torch.inference_mode(), pytest.raises((TypeError, RuntimeError), match="type"):
        long_term_tdm_shift(ltdm_f, shift_f, x)
