"""Augmentations on uint8 frame tensors."""

import pytest
import torch

from tdn.data import (IMAGENET_MEAN, IMAGENET_STD, EvalTransform, MultiScaleCrop, TrainTransform,
                      default_scale_size, normalize_frames, parse_label_swaps)


def _frames(k=10, h=48, w=64):
    return torch.randint(0, 256, (k, 3, h, w), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("h,w,size", [(48, 64, 32), (64, 48, 40), (120, 160, 112), (32, 32, 32)])
def test_train_transform_shape_dtype_and_shared_crop(h, w, size):
    frames = _frames(6, h, w)
    frames[:] = frames[0]  # identical frames must stay identical: one crop for the whole clip
    views, _ = TrainTransform(size)(frames, 0, torch.Generator().manual_seed(1))
    assert views.shape == (1, 6, 3, size, size) and views.dtype == torch.uint8
    assert (views[0] == views[0, :1]).all()


def test_multi_scale_crop_sizes_follow_tsn_scales():
    crop = MultiScaleCrop(224)
    sizes = crop.crop_sizes(256, 340)
    sides = [256, 224, 192, 168]  # int(256 * s), 224 snapped (within 3 px)
    expected = {(sides[i], sides[j]) for i in range(4) for j in range(4) if abs(i - j) <= 1}
    assert set(sizes) == expected
    positions = crop.positions(256, 340, 224, 224)
    assert len(positions) == 13 and (0, 0) in positions and (32, 116) in positions
    assert all(0 <= top <= 32 and 0 <= left <= 116 for top, left in positions)


def test_train_crop_is_random_but_reproducible_from_its_generator():
    frames = _frames()
    transform = TrainTransform(32)
    a, _ = transform(frames, 0, torch.Generator().manual_seed(7))
    b, _ = transform(frames, 0, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    outcomes = {transform(frames, 0, torch.Generator().manual_seed(s))[0].sum().item()
                for s in range(20)}
    assert len(outcomes) > 5


def test_flip_swaps_configured_labels_only_when_flipped():
    frames = _frames(2, 32, 32)
    # scales (1,) and size == short side -> the crop is the whole image; only the flip varies
    transform = TrainTransform(32, scales=(1.0,), flip_label_swaps={3: 4, 4: 3})
    for seed in range(20):
        views, label = transform(frames, 3, torch.Generator().manual_seed(seed))
        flipped = torch.equal(views[0], frames.flip(-1))
        assert flipped or torch.equal(views[0], frames)
        assert label == (4 if flipped else 3)
        assert transform(frames, 5, torch.Generator().manual_seed(seed))[1] == 5
    no_flip = TrainTransform(32, scales=(1.0,), flip=False)
    assert all(torch.equal(no_flip(frames, 3, torch.Generator().manual_seed(s))[0][0], frames)
               for s in range(10))


def test_label_swaps_parsing():
    assert parse_label_swaps("") == {}
    assert parse_label_swaps("0:1") == {0: 1, 1: 0}
    assert parse_label_swaps("something") == {86: 87, 87: 86, 93: 94, 94: 93, 166: 167, 167: 166}
    with pytest.raises(ValueError, match="86:87"):
        parse_label_swaps("86-87")
    with pytest.raises(ValueError, match="symmetric"):
        TrainTransform(32, flip_label_swaps={1: 2})


def test_eval_centre_crop_takes_the_middle():
    frames = torch.zeros(2, 3, 64, 96, dtype=torch.uint8)
    frames[..., 16:48, 32:64] = 255  # a 32x32 white square in the middle
    views, label = EvalTransform(32, scale_size=64)(frames, 7)
    assert views.shape == (1, 2, 3, 32, 32) and label == 7
    assert (views == 255).all()


@pytest.mark.parametrize("h,w", [(64, 96), (96, 64)])
def test_three_crops_cover_both_ends_of_the_long_side(h, w):
    frames = torch.arange(max(h, w), dtype=torch.uint8).view(1, 1, 1, -1) if w > h else \
        torch.arange(max(h, w), dtype=torch.uint8).view(1, 1, -1, 1)
    frames = frames.expand(1, 3, h, w).contiguous()
    views, _ = EvalTransform(64, scale_size=64, num_crops=3)(frames, 0)
    assert views.shape == (3, 1, 3, 64, 64)
    long_axis = -1 if w > h else -2
    first = views.select(long_axis, 0)
    last = views.select(long_axis, 63)
    assert first[0].min() == 0 and last[2].max() == max(h, w) - 1
    assert first[1].min() == (max(h, w) - 64) // 2


def test_eval_resizes_short_side_before_cropping():
    views, _ = EvalTransform(224)(_frames(1, 240, 320), 0)
    assert views.shape[-2:] == (224, 224)
    assert default_scale_size(224) == 256
    with pytest.raises(ValueError, match="num_crops"):
        EvalTransform(224, num_crops=2)
    with pytest.raises(ValueError, match="scale_size"):
        EvalTransform(224, scale_size=200)


def test_transform_rejects_float_frames():
    with pytest.raises(ValueError, match="uint8"):
        TrainTransform(32)(torch.zeros(2, 3, 32, 32), 0)


def test_normalize_matches_imagenet_statistics():
    frames = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 2, 2)
    out = normalize_frames(frames)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(out[0], (-mean / std).expand(3, 2, 2))
    torch.testing.assert_close(out[1], ((1 - mean) / std).expand(3, 2, 2))
    assert out.dtype == torch.float32
