"""tdn.models: the TDN and TSN networks, their registry, inputs and key layout."""

from __future__ import annotations

import pytest
import torch

import tdn
from tdn.models.clips import SNIPPET_CHANNELS

from _model_fixtures import official_key_shapes

SIZE = 64  # the smallest comfortable frame size: layer4 is 2x2, every L-TDM pools 2x2
T = 2


def _clip(n=1, t=T, size=SIZE, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, t * SNIPPET_CHANNELS, size, size, generator=gen, dtype=dtype)


def _randomise_buffers(model, seed=0):
    """Non-trivial BN statistics and shift weights (fresh models have identity ones)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_mean"):
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))
            elif name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif name.endswith("shift.conv.weight"):
                t.add_(0.1 * torch.randn(t.shape, generator=gen))
            elif name.startswith("new_fc.weight"):
                t.copy_(0.05 * torch.randn(t.shape, generator=gen))


def _fused_and_reference(arch, dtype=torch.float32, **kwargs):
    torch.manual_seed(0)
    fused = tdn.build_model(arch, num_classes=7, num_segments=T, **kwargs)
    _randomise_buffers(fused)
    ref = tdn.build_model(arch, num_classes=7, num_segments=T, backend="reference", **kwargs)
    ref.load_state_dict(fused.state_dict())
    return fused.to(dtype), ref.to(dtype)


def test_registry_lists_every_variant():
    assert tdn.list_models() == sorted(f"{f}_resnet{d}" for f in ("tdn", "tsn")
                                       for d in (18, 34, 50, 101))


def test_unknown_model_lists_the_available_ones():
    with pytest.raises(ValueError, match="tdn_resnet50"):
        tdn.build_model("tdn_resnet152")


@pytest.mark.parametrize("arch", ["tdn_resnet18", "tsn_resnet18"])
def test_forward_shape_and_both_input_layouts(arch):
    model = tdn.build_model(arch, num_classes=5, num_segments=T).eval()
    clip = _clip(n=2)
    with torch.no_grad():
        flat = model(clip)
        six_d = model(clip.view(2, T, 5, 3, SIZE, SIZE))
    assert flat.shape == (2, 5)
    torch.testing.assert_close(flat, six_d, rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["tdn_resnet50", "tdn_resnet18"])
def test_fused_model_equals_reference_model_eval(arch):
    fused, ref = _fused_and_reference(arch)
    fused.eval(), ref.eval()
    clip = _clip(n=2)
    with torch.no_grad():
        logits = fused(clip)
        torch.testing.assert_close(logits, ref(clip), rtol=1e-4, atol=1e-6)
    assert logits.shape == (2, 7)


@pytest.mark.parametrize("arch,dtype,tol", [
    # Training-mode BN over tiny batches amplifies float32 rounding; float64 shows that the
    # two paths compute the same function, float32 on the smaller net that they agree in use.
    ("tdn_resnet50", torch.float64, 1e-9),
    ("tdn_resnet18", torch.float32, 1e-4),
])
def test_fused_model_equals_reference_model_training_step(arch, dtype, tol):
    fused, ref = _fused_and_reference(arch, dtype, dropout=0.0)
    fused.train(), ref.train()
    clip = _clip(n=1, dtype=dtype)
    target = torch.tensor([4])
    grads = []
    for model in (fused, ref):
        loss = torch.nn.functional.cross_entropy(model(clip), target)
        loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    scale = max(g.abs().max() for g in grads[1].values())
    for name, g_ref in grads[1].items():
        torch.testing.assert_close(grads[0][name], g_ref, rtol=tol, atol=tol * scale, msg=name)
    # Both updated their running statistics the same way (twice per shared L-TDM BN).
    for (name, a), b in zip(fused.state_dict().items(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=name)
    ltdm = fused.base_model.layer2_bak[0].mse
    assert int(ltdm.bn3.num_batches_tracked) == 2 and int(ltdm.bn1.num_batches_tracked) == 1


@pytest.mark.parametrize("depth", [50, 101])
def test_state_dict_keys_and_shapes_are_the_authors(depth):
    with torch.device("meta"):
        model = tdn.build_model(f"tdn_resnet{depth}", num_classes=174, num_segments=8)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k[len("module."):]: s for k, s in official_key_shapes(depth).items()
              if ".conv1_temp." not in k}
    assert ours == theirs


@pytest.mark.parametrize("num_segments,alpha,beta", [(8, 0.5, 0.5), (16, 0.75, 0.25),
                                                     (4, 0.75, 0.25)])
def test_fusion_weights_default_per_segment_count(num_segments, alpha, beta):
    with torch.device("meta"):
        model = tdn.build_model("tdn_resnet18", num_segments=num_segments)
    assert (model.alpha, model.beta) == (alpha, beta)
    assert (model.base_model.fuse.alpha, model.base_model.fuse.beta) == (alpha, beta)


def test_fusion_weights_can_be_overridden_but_not_for_tsn():
    with torch.device("meta"):
        model = tdn.build_model("tdn_resnet18", alpha=0.9, beta=0.1)
    assert (model.base_model.fuse.alpha, model.base_model.fuse.beta) == (0.9, 0.1)
    with pytest.raises(ValueError, match="TSN"):
        tdn.build_model("tsn_resnet18", alpha=0.9)


@pytest.mark.parametrize("shape,match", [
    ((1, 31, SIZE, SIZE), r"31 channels, not a multiple of 15"),
    ((1, 3 * SNIPPET_CHANNELS, SIZE, SIZE), r"holds 3 segments .* num_segments=2"),
    ((1, 3, SIZE, SIZE), r"3 channels, not a multiple of 15"),
    ((3, SIZE, SIZE), r"must be 4-D or 6-D"),
    ((1, 2, 4, 3, SIZE, SIZE), r"does not match"),
])
@pytest.mark.parametrize("arch", ["tdn_resnet18", "tsn_resnet18"])
def test_wrong_input_states_the_expected_shape(arch, shape, match):
    model = tdn.build_model(arch, num_segments=T)
    with pytest.raises(ValueError, match=match) as info:
        model(torch.zeros(shape))
    assert "(N, 2*15=30, H, W) or (N, 2, 5, 3, H, W)" in str(info.value)


def test_too_small_frames_are_rejected():
    model = tdn.build_model("tdn_resnet18", num_segments=T)
    with pytest.raises(ValueError, match="at least 33x33"):
        model(_clip(size=32))


def test_tsn_sees_only_the_centre_frame_and_tdn_sees_all():
    clip = _clip()
    moved = clip.clone()
    moved.view(1, T, 5, 3, SIZE, SIZE)[:, :, 0] += 1.0  # change frame 1 of every snippet
    for arch, changes in (("tsn_resnet18", False), ("tdn_resnet18", True)):
        model = tdn.build_model(arch, num_segments=T).eval()
        with torch.no_grad():
            torch.nn.init.normal_(model.new_fc.weight)
            same = torch.equal(model(clip), model(moved))
        assert same != changes, arch


def test_channels_last_and_bf16_autocast():
    fused, _ = _fused_and_reference("tdn_resnet18")
    fused.eval()
    clip = _clip(n=2)
    with torch.no_grad():
        expected = fused(clip)
        fused = fused.to(memory_format=torch.channels_last)
        cl = fused(clip.to(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = fused(clip.to(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, expected, rtol=1e-4, atol=1e-6)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), expected, rtol=0.1, atol=0.05 * expected.abs().max())


def test_training_under_autocast_channels_last_reaches_every_parameter():
    torch.manual_seed(0)
    model = tdn.build_model("tdn_resnet18", num_classes=3, num_segments=T)
    model = model.to(memory_format=torch.channels_last).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(_clip(n=2).to(memory_format=torch.channels_last))
    logits.float().sum().backward()
    no_grad = [n for n, p in model.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all()]
    assert no_grad == []
    assert model.base_model.layer3_bak[1].shift.conv.weight.grad.abs().sum() > 0


def test_torch_compile_fullgraph_matches_eager():
    model, _ = _fused_and_reference("tdn_resnet18")
    model.eval()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    clip = _clip(n=2)
    with torch.no_grad():
        torch.testing.assert_close(compiled(clip), model(clip), rtol=1e-5, atol=1e-6)


def test_stem_max_pool_is_exact_in_both_layouts():
    from tdn.models.resnet import StemMaxPool

    x = torch.randn(2, 8, 15, 13)
    plain = torch.nn.MaxPool2d(3, 2, 1)
    with torch.no_grad():
        fast = StemMaxPool()(x)
        assert torch.equal(fast, plain(x)) and fast.is_contiguous()
        cl = StemMaxPool()(x.contiguous(memory_format=torch.channels_last))
        assert torch.equal(cl, plain(x))
    xg = x.clone().requires_grad_()
    StemMaxPool()(xg).sum().backward()
    xr = x.clone().requires_grad_()
    plain(xr).sum().backward()
    assert torch.equal(xg.grad, xr.grad)
