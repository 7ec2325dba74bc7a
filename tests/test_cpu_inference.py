"""pack_for_cpu_inference: oneDNN's reordered weights and fused ReLU / residual adds give the
folded model's logits, keep its state dict, and step aside wherever they cannot run."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import tdn
from tdn.models.cpu_inference import PackedConv2d, pack_for_cpu_inference, packed_path_available
from tdn.models.fold import FoldedBatchNorm

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(),
                                reason="this torch has no oneDNN (mkldnn)")


def _with_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Batch norms with non-trivial running statistics and affines, so folding is visible."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
            m.weight.data.copy_(1 + 0.1 * torch.randn(m.num_features, generator=gen))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=gen))
    return model.eval()


@pytest.fixture(scope="module", params=["tdn_resnet18", "tsn_resnet18", "tdn_resnet50"])
def models(request):
    torch.manual_seed(0)
    model = _with_statistics(tdn.build_model(request.param, num_classes=7, num_segments=2))
    folded = tdn.fold_batch_norm(copy.deepcopy(model))
    packed = pack_for_cpu_inference(copy.deepcopy(model))
    return model, folded, packed


@pytest.mark.parametrize("channels_last", [False, True])
def test_logits_match_the_unpacked_model(models, channels_last):
    model, folded, packed = models
    x = torch.randn(2, 2 * 15, 64, 64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want = model(x)
        got = packed(x)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_every_convolution_and_block_is_packed_and_the_state_dict_is_kept(models):
    _, folded, packed = models
    convs = [m for m in packed.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(isinstance(m, PackedConv2d) for m in convs)
    assert any(type(m).__name__.startswith("Packed") and hasattr(m, "conv1")
               for m in packed.modules())
    want, got = folded.state_dict(), packed.state_dict()
    assert list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) for k in want)


# With autograd on, the packed modules run the folded model's plain modules, so the input
# gradient is the folded model's up to float rounding (about 1e-6 relative). Not compared
# with the unfolded model: in float32 a random 50-layer net's input gradient moves by up to
# 1e-2 (relative, against float64) where a rounding difference flips a ReLU near its kink,
# for the authors' reference model too.
def test_with_autograd_on_the_plain_path_runs_and_gives_gradients(models):
    _, folded, packed = models
    x = torch.randn(1, 2 * 15, 64, 64, generator=torch.Generator().manual_seed(0))
    x_packed, x_folded = x.clone().requires_grad_(), x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(packed(x_packed).sum(), x_packed)
    (want,) = torch.autograd.grad(folded(x_folded).sum(), x_folded)
    assert grad.abs().sum() > 0
    assert ((grad - want).norm() / want.norm()).item() < 1e-5


def test_packing_twice_changes_nothing(models):
    _, _, packed = models
    again = pack_for_cpu_inference(copy.deepcopy(packed))
    assert [type(m) for m in again.modules()] == [type(m) for m in packed.modules()]
    x = torch.randn(1, 2 * 15, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), packed(x))


def test_a_packed_model_refuses_training_mode(models):
    _, _, packed = models
    model = copy.deepcopy(packed).train()
    with pytest.raises(RuntimeError, match="folded"):
        model(torch.randn(1, 2 * 15, 64, 64))


def test_the_stem_relu_moves_into_its_convolution():
    model = pack_for_cpu_inference(_with_statistics(tdn.build_model("tdn_resnet18", 7, 2)))
    stem = model.base_model.conv1_5 if hasattr(model, "base_model") else None
    stem = stem if stem is not None else next(m for n, m in model.named_modules()
                                              if n.endswith("conv1_5"))
    assert stem[0].activation == "relu" and isinstance(stem[1], FoldedBatchNorm)
    assert isinstance(stem[2], nn.Identity)


@pytest.mark.parametrize("stride,padding,dilation,groups", [
    (1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 1), (1, 1, 1, 4), (2, 1, 1, 8)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_convolution_matches_relu_of_conv_plus_add(stride, padding, dilation, groups,
                                                         channels_last):
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 16, 3, stride=stride, padding=padding, dilation=dilation,
                     groups=groups).eval()
    packed = PackedConv2d.from_conv(copy.deepcopy(conv))
    x = torch.randn(3, 8, 13, 11)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = conv(x)
        add = torch.randn_like(y)
        assert packed_path_available(x)
        for kwargs, want in [({}, y), ({"relu": True}, F.relu(y)),
                             ({"add": add}, y + add), ({"relu": True, "add": add},
                                                       F.relu(y + add))]:
            got = packed.fused(x, **kwargs)
            assert got.shape == want.shape
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-5), kwargs


def test_the_reordered_weight_follows_the_input_shape_and_in_place_edits():
    conv = nn.Conv2d(4, 6, 3, padding=1).eval()
    packed = PackedConv2d.from_conv(conv)
    with torch.no_grad():
        for shape in [(2, 4, 9, 9), (1, 4, 5, 7), (2, 4, 9, 9)]:
            x = torch.randn(shape)
            assert torch.allclose(packed(x), F.conv2d(x, conv.weight, conv.bias, padding=1),
                                  atol=1e-5)
        conv.weight.mul_(2)  # shared parameter: the packed copy must see the edit
        x = torch.randn(2, 4, 9, 9)
        assert torch.allclose(packed(x), F.conv2d(x, conv.weight, conv.bias, padding=1),
                              atol=1e-5)


def test_off_the_packed_path_where_it_cannot_run():
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        assert packed_path_available(x)
        assert not packed_path_available(x.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not packed_path_available(x)
    assert not packed_path_available(x)  # autograd on
    with pytest.raises(TypeError, match="nn.Conv2d"):
        PackedConv2d.from_conv(nn.Conv1d(2, 2, 3))
    with pytest.raises(ValueError, match="activation"):
        PackedConv2d.from_conv(nn.Conv2d(2, 2, 3), activation="gelu")


def test_a_packed_model_exports_with_plain_operators():
    model = pack_for_cpu_inference(_with_statistics(tdn.build_model("tsn_resnet18", 7, 2)))
    x = torch.randn(1, 2 * 15, 64, 64)
    program = torch.export.export(model, (x,))
    assert not [n for n in program.graph.nodes if "mkldnn" in str(n.target)]
    with torch.no_grad():
        assert torch.allclose(program.module()(x), model(x), rtol=1e-4, atol=1e-4)


def test_a_packed_model_compiles_to_one_graph():
    # fullgraph: no graph break (and so no per-block recompilation) in the packed modules;
    # the "eager" backend traces without Inductor's minutes of code generation.
    model = pack_for_cpu_inference(_with_statistics(tdn.build_model("tdn_resnet18", 7, 2)))
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    x = torch.randn(1, 2 * 15, 64, 64)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), rtol=1e-4, atol=1e-4)
