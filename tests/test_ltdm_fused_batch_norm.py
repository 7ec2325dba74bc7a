"""The fused L-TDM tail keeps bn3's batch-norm semantics exactly.

``long_term_tdm_shift`` on a fused backend never forms ``bn3(conv3(m_d))``: it hands
``project_excite_shift`` one affine per direction, from bn3's running statistics (eval) or from
batch statistics derived from the mean and covariance of the c-channel mixture (training). A
float64 training step of a whole fused model must therefore equal the reference model (the
authors' op-by-op path): logits, every parameter gradient, every running statistic.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import tdn
import tdn_ops
from tdn.engine.optim import apply_batch_norm_mode, freeze_batch_norm_parameters
from tdn.models.clips import SNIPPET_CHANNELS
from tdn_ops._projected_bn import projected_batch_norm_affine
from tdn_ops.nn import LongTermTDM, TemporalShift, long_term_tdm_shift

pytestmark = pytest.mark.skipif(not tdn_ops.NATIVE_AVAILABLE,
                                reason="tdn_ops._C is not built: the CPU kernels are missing")

SIZE = 64  # layer4 is 2x2 and every L-TDM still pools 2x2
TOL = 1e-10


def _randomise(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affines, shift weights and classifier."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_mean"):
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))
            elif name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith("num_batches_tracked"):
                t.fill_(3)
            elif name.endswith("shift.conv.weight"):
                t.add_(0.1 * torch.randn(t.shape, generator=gen))
            elif name.startswith("new_fc.weight"):
                t.copy_(0.05 * torch.randn(t.shape, generator=gen))
            elif ".bn" in name and (name.endswith("weight") or name.endswith("bias")):
                t.add_(0.1 * torch.randn(t.shape, generator=gen))


def _models(arch: str, num_segments: int, channels_last: bool, bn_mode: str):
    torch.manual_seed(0)
    fused = tdn.build_model(arch, num_classes=5, num_segments=num_segments, dropout=0.0)
    _randomise(fused)
    ref = tdn.build_model(arch, num_classes=5, num_segments=num_segments, dropout=0.0,
                          backend="reference")
    ref.load_state_dict(fused.state_dict())
    models = []
    for model in (fused, ref):
        model = model.double()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        freeze_batch_norm_parameters(model, bn_mode)
        model.train()
        apply_batch_norm_mode(model, bn_mode)
        models.append(model)
    return models


def _training_step(model, clip, target):
    logits = model(clip)
    nn.functional.cross_entropy(logits, target).backward()
    return logits.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def _assert_step_equal(arch, num_segments, channels_last, bn_mode):
    fused, ref = _models(arch, num_segments, channels_last, bn_mode)
    gen = torch.Generator().manual_seed(1)
    clip = torch.randn(2, num_segments * SNIPPET_CHANNELS, SIZE, SIZE, generator=gen,
                       dtype=torch.float64)
    if channels_last:
        clip = clip.to(memory_format=torch.channels_last)
    target = torch.tensor([1, 3])
    logits_f, grads_f = _training_step(fused, clip, target)
    logits_r, grads_r = _training_step(ref, clip, target)
    torch.testing.assert_close(logits_f, logits_r, rtol=TOL, atol=TOL)
    assert grads_f.keys() == grads_r.keys() and grads_r
    scale = max(g.abs().max() for g in grads_r.values())
    for name, g_ref in grads_r.items():
        assert grads_f[name] is not None, name
        torch.testing.assert_close(grads_f[name], g_ref, rtol=TOL, atol=TOL * scale, msg=name)
    buffers_r = dict(ref.named_buffers())
    for name, b in fused.named_buffers():
        torch.testing.assert_close(b, buffers_r[name], rtol=TOL, atol=TOL, msg=name)
    return fused


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("num_segments", [1, 2, 8])
@pytest.mark.parametrize("arch", ["tdn_resnet18", "tdn_resnet50"])
def test_training_step_equals_reference_model(arch, num_segments, channels_last):
    fused = _assert_step_equal(arch, num_segments, channels_last, "train")
    ltdm = fused.base_model.layer3_bak[0].mse
    # bn3 saw both directions: two updates per step (from 3).
    assert int(ltdm.bn3.num_batches_tracked) == 5


@pytest.mark.parametrize("bn_mode", ["partial", "frozen"])
@pytest.mark.parametrize("arch", ["tdn_resnet18", "tdn_resnet50"])
def test_training_step_equals_reference_model_under_bn_modes(arch, bn_mode):
    fused = _assert_step_equal(arch, 2, False, bn_mode)
    ltdm = fused.base_model.layer3_bak[0].mse
    # Frozen batch norms keep their statistics and get no gradient.
    assert int(ltdm.bn3.num_batches_tracked) == 3
    assert ltdm.bn3.weight.grad is None


def _ltdm_pair(bn3: nn.BatchNorm2d, channels=32, num_segments=4):
    torch.manual_seed(0)
    fused = LongTermTDM(channels, num_segments).double()
    fused.bn3 = bn3.double()
    ref = LongTermTDM(channels, num_segments, backend="reference").double()
    ref.bn3 = type(bn3)(channels, momentum=bn3.momentum, affine=bn3.affine,
                        track_running_stats=bn3.track_running_stats).double()
    ref.load_state_dict(fused.state_dict())
    shift = TemporalShift(channels, num_segments).double()
    ref_shift = TemporalShift(channels, num_segments, backend="reference").double()
    ref_shift.load_state_dict(shift.state_dict())
    return (fused, shift), (ref, ref_shift)


@pytest.mark.parametrize("bn3", [
    lambda c: nn.BatchNorm2d(c, momentum=None),  # cumulative moving average
    lambda c: nn.BatchNorm2d(c, affine=False),
    lambda c: nn.BatchNorm2d(c, track_running_stats=False),
], ids=["momentum_none", "no_affine", "no_running_stats"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm_variants(bn3, training):
    (fused, shift), (ref, ref_shift) = _ltdm_pair(bn3(32))
    x = torch.randn(8, 32, 6, 5, dtype=torch.float64)
    for _ in range(2):  # the second call sees the first one's statistics
        outs, grads = [], []
        for ltdm, sh in ((fused, shift), (ref, ref_shift)):
            ltdm.train(training)
            xg = x.clone().requires_grad_()
            out = long_term_tdm_shift(ltdm, sh, xg)
            out.backward(torch.cos(out.detach()))
            outs.append(out)
            grads.append([xg.grad] + [p.grad.clone() for p in ltdm.parameters()])
            ltdm.zero_grad()
        torch.testing.assert_close(outs[0], outs[1], rtol=TOL, atol=TOL)
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=TOL, atol=TOL)
        for (name, a), b in zip(fused.bn3.state_dict().items(), ref.bn3.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=TOL, atol=TOL, msg=name)


def test_affine_reproduces_batch_norm_of_the_projection():
    """The helper on its own: scale*(W m) + bias equals bn(conv(m)) per direction, including a
    convolution bias, with bn's running statistics updated twice, forward direction first."""
    gen = torch.Generator().manual_seed(0)
    mixed = torch.randn(2, 6, 4, 3, 5, generator=gen, dtype=torch.float64) + 0.3
    conv = nn.Conv2d(4, 16, 1, bias=True).double()
    bn, bn_ref = nn.BatchNorm2d(16).double(), nn.BatchNorm2d(16).double()
    weight = conv.weight.flatten(1)
    scale, bias = projected_batch_norm_affine(bn, weight, conv.bias, mixed)
    for d in range(2):
        expected = bn_ref(conv(mixed[d]))
        got = (torch.einsum("kj,bjhw->bkhw", weight, mixed[d]) * scale[d, :, None, None]
               + bias[d, :, None, None])
        torch.testing.assert_close(got, expected, rtol=TOL, atol=TOL)
    torch.testing.assert_close(bn.running_mean, bn_ref.running_mean, rtol=TOL, atol=TOL)
    torch.testing.assert_close(bn.running_var, bn_ref.running_var, rtol=TOL, atol=TOL)
    assert int(bn.num_batches_tracked) == 2


def test_single_value_per_channel_is_rejected_in_training():
    bn = nn.BatchNorm2d(16).double()
    mixed = torch.randn(2, 1, 4, 1, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        projected_batch_norm_affine(bn, torch.randn(16, 4, dtype=torch.float64), None, mixed)
