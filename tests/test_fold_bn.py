"""tdn.models.fold: batch norms folded into the convolutions before them give the same logits.

Every model is first *calibrated*: one training-mode forward with momentum 1 sets each batch
norm's running statistics to the statistics of real activations, then the affine parameters
are drawn at random. Without that, random running statistics would let eval-mode activations
grow block after block, and a tolerance on logits would mean nothing.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from tdn.models import BasicBlock, Bottleneck, build_model
from tdn.models.fold import FoldedBatchNorm, fold_batch_norm, fold_into_conv
from tdn_ops.nn import LongTermTDM, TemporalShift, long_term_tdm_shift

SIZE = 64  # the smallest frame size at which layer4's L-TDM keeps its 2x2 pooling window
ATOL = 1e-5


def calibrate(model: nn.Module, example: torch.Tensor, seed: int = 0) -> nn.Module:
    """Random convolution biases and batch-norm affines, then running statistics from one
    training-mode forward of ``example``; returns the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.copy_(0.1 * torch.randn(m.out_channels, generator=gen))
            if isinstance(m, nn.Linear):  # logits of order one, not the authors' 1e-3 init
                nn.init.normal_(m.weight, 0.0, m.in_features ** -0.5, generator=gen)
        for bn in norms:
            bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.bias.copy_(0.2 * torch.randn(bn.num_features, generator=gen))
            bn.momentum = 1.0  # running statistics = this batch's statistics
        # Residual branches with small gains, as in trained ResNets: a random network with
        # unit gains amplifies any perturbation, float32 rounding included, ~4x per stage, and
        # its own float32 logits then differ from exact ones by 1e-4.
        for block in model.modules():
            if isinstance(block, Bottleneck):
                block.bn3.weight.mul_(0.2)
            elif isinstance(block, BasicBlock):
                block.bn2.weight.mul_(0.2)
        model.train()
        model(example)
    for bn in norms:
        bn.momentum = 0.1
    return model.eval()


def clip(num_segments: int, videos: int = 2, layout: str = "contiguous") -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(videos, num_segments * 15, SIZE, SIZE, generator=gen)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def count(model: nn.Module, cls: type) -> int:
    return sum(isinstance(m, cls) for m in model.modules())


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("num_segments", [1, 8])
@pytest.mark.parametrize("name", ["tdn_resnet18", "tdn_resnet50", "tsn_resnet18",
                                  "tsn_resnet50"])
def test_folded_logits_match(name, num_segments, layout):
    torch.manual_seed(0)
    x = clip(num_segments, layout=layout)
    model = build_model(name, num_classes=10, num_segments=num_segments)
    if layout == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    calibrate(model, x)
    norms = count(model, nn.BatchNorm2d)
    with torch.no_grad():
        expected = model(x)
        assert fold_batch_norm(model) is model
        folded = model(x)
    assert count(model, nn.BatchNorm2d) == 0
    assert count(model, FoldedBatchNorm) == norms
    assert expected.abs().max() > 0.1  # the comparison below is not between near-zeros
    torch.testing.assert_close(folded, expected, atol=ATOL, rtol=0)
    if layout == "channels_last":
        conv = model.base_model.conv1
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name,backend", [("tdn_resnet18", "reference"),
                                          ("tdn_resnet18", "auto"), ("tsn_resnet18", None)])
def test_folding_is_exact_in_float64(name, backend):
    """In float64 the folded model equals the unfolded one to rounding: the fold's algebra is
    right, on the authors' module-by-module path and on the fused path alike (float32 then
    differs only by the rounding that any change of summation order brings)."""
    torch.manual_seed(0)
    x = clip(8).double()
    model = build_model(name, num_classes=10, backend=backend).double()
    calibrate(model, x)
    with torch.no_grad():
        expected = model(x)
        folded = fold_batch_norm(model)(x)
    torch.testing.assert_close(folded, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("backend", ["reference", "auto"])
@pytest.mark.parametrize("num_segments", [1, 8])
def test_long_term_tdm_folds_per_direction_modules(backend, num_segments):
    """The L-TDM's convolutions and batch norms serve both directions: one fold each."""
    torch.manual_seed(0)
    channels = 64
    ltdm = LongTermTDM(channels, num_segments, backend=backend)
    shift = TemporalShift(channels, num_segments, backend=backend)
    block = nn.ModuleDict({"mse": ltdm, "shift": shift})
    x = torch.randn(2 * num_segments, channels, 9, 9)
    _calibrate_ltdm(ltdm, x)
    block.eval()
    with torch.no_grad():
        expected = long_term_tdm_shift(ltdm, shift, x)
        fold_batch_norm(block)
        folded = long_term_tdm_shift(ltdm, shift, x)
    assert [type(getattr(ltdm, n)) for n in ("bn1", "bn3", "bn3_smallscale2",
                                             "bn3_smallscale4")] == [FoldedBatchNorm] * 4
    assert ltdm.conv3.bias is not None and ltdm.conv1.bias is not None
    torch.testing.assert_close(folded, expected, atol=ATOL, rtol=0)


def _calibrate_ltdm(ltdm: LongTermTDM, x: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(4)
    ltdm.train()
    for bn in (m for m in ltdm.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.momentum = 1.0
    with torch.no_grad():
        ltdm(x)
    for bn in (m for m in ltdm.modules() if isinstance(m, nn.BatchNorm2d)):
        with torch.no_grad():
            bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(bn.num_features, generator=gen))
    ltdm.eval()


def test_folding_needs_eval_mode():
    model = build_model("tsn_resnet18", num_classes=10, num_segments=1)
    with pytest.raises(ValueError, match=r"model in eval mode .*model\.eval\(\)"):
        fold_batch_norm(model)
    model.eval()
    model.base_model.layer1[0].bn1.train()  # one stray module in training mode is enough
    with pytest.raises(ValueError, match="base_model.layer1.0.bn1"):
        fold_batch_norm(model)
    assert count(model, nn.BatchNorm2d) > 0  # nothing was folded


def test_folded_model_refuses_training_forward():
    model = fold_batch_norm(build_model("tsn_resnet18", num_classes=10, num_segments=1).eval())
    model.train()
    with pytest.raises(RuntimeError, match="folded into base_model.conv1 .*inference only"):
        model(clip(1, videos=2))


def test_folding_twice_changes_nothing():
    x = clip(1)
    model = calibrate(build_model("tsn_resnet18", num_classes=10, num_segments=1), x)
    once = copy.deepcopy(fold_batch_norm(model).state_dict())
    twice = fold_batch_norm(model).state_dict()
    assert once.keys() == twice.keys()
    assert all(torch.equal(once[k], twice[k]) for k in once)


def test_sequential_pairs_and_unfoldable_batch_norms():
    """Conv -> BN pairs inside any nn.Sequential fold; a BN without running statistics (which
    normalises with batch statistics even in eval mode) and a BN after a ReLU stay."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8, track_running_stats=False),
                        nn.ReLU(), nn.BatchNorm2d(8))
    x = torch.randn(4, 3, 10, 10)
    net.train()
    with torch.no_grad():
        net(x)
    net.eval()
    with torch.no_grad():
        expected = net(x)
        folded = fold_batch_norm(net)(x)
    assert [type(m) for m in net] == [nn.Conv2d, FoldedBatchNorm, nn.ReLU, nn.Conv2d,
                                      nn.BatchNorm2d, nn.ReLU, nn.BatchNorm2d]
    assert net[0].bias is not None
    torch.testing.assert_close(folded, expected, atol=ATOL, rtol=0)


def test_fold_into_conv_float64_exact_formula():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=True).double()
    bn = nn.BatchNorm2d(6).double().eval()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        expected = bn(conv(x))
        fold_into_conv(conv, bn)
        torch.testing.assert_close(conv(x), expected, atol=1e-12, rtol=0)


def test_fold_rejects_bad_arguments():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        fold_batch_norm("tdn_resnet50")
    with pytest.raises(ValueError, match="6 output channels"):
        fold_into_conv(nn.Conv2d(3, 6, 1), nn.BatchNorm2d(5).eval())
    with pytest.raises(ValueError, match="no running statistics"):
        fold_into_conv(nn.Conv2d(3, 6, 1), nn.BatchNorm2d(6, track_running_stats=False))


def test_build_model_folds_after_loading_weights(tmp_path):
    """``build_model(..., pretrained=path, fold_bn=True)`` folds the loaded weights, not the
    fresh initialisation, and hands back an eval-mode model."""
    x = clip(1)
    trained = calibrate(build_model("tsn_resnet18", num_classes=10, num_segments=1), x)
    path = tmp_path / "weights.pt"
    torch.save(trained.state_dict(), path)
    folded = build_model("tsn_resnet18", num_classes=10, num_segments=1, pretrained=path,
                         fold_bn=True)
    assert not folded.training
    assert count(folded, nn.BatchNorm2d) == 0
    with torch.no_grad():
        torch.testing.assert_close(folded(x), trained(x), atol=ATOL, rtol=0)


def test_build_model_fold_bn_argument():
    import tdn

    assert tdn.fold_batch_norm is fold_batch_norm
    assert count(build_model("tsn_resnet18", num_classes=10), nn.BatchNorm2d) > 0
    with pytest.raises(TypeError, match="fold_bn must be a bool"):
        build_model("tsn_resnet18", num_classes=10, fold_bn="yes")
