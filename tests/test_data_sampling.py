"""TSN snippet sampling (docs/math.md §1) and the sharded, seeded sampler."""

import pytest
import torch

from tdn.data import ShardedSampler, sample_frame_indices, sample_seed, snippet_starts

L = 5


def _segment_bounds(num_frames, num_segments):
    positions = max(num_frames - L + 1, 1)
    return [(t * positions // num_segments, (t + 1) * positions // num_segments)
            for t in range(num_segments)]


@pytest.mark.parametrize("num_frames,num_segments", [(100, 8), (40, 8), (44, 8), (13, 8),
                                                     (12, 8), (5, 8), (3, 4), (1, 8), (64, 16)])
def test_train_starts_stay_inside_their_segment(num_frames, num_segments):
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        starts = snippet_starts(num_frames, num_segments, "train", generator=generator)
        assert starts.shape == (num_segments,)
        for t, (low, high) in enumerate(_segment_bounds(num_frames, num_segments)):
            assert low <= starts[t] < max(high, low + 1), (t, starts.tolist())
        assert starts.max() <= max(num_frames - L, 0)


def test_train_sampling_reaches_every_position_of_a_segment():
    # 44 frames, T=8: 40 start positions, exact segments of 5 -> each start drawn from 5 values
    generator = torch.Generator().manual_seed(1)
    seen = torch.stack([snippet_starts(44, 8, "train", generator=generator) for _ in range(400)])
    for t in range(8):
        assert sorted(seen[:, t].unique().tolist()) == list(range(5 * t, 5 * t + 5))


def test_exact_segment_boundaries_give_segment_centres():
    # 44 frames -> 40 positions, 8 segments of width 5 -> centres at 2, 7, 12, ...
    assert snippet_starts(44, 8, "val").tolist() == [5 * t + 2 for t in range(8)]
    # matches the authors' int(tick / 2 + tick * t) with tick = positions / T
    tick = (100 - L + 1) / 8
    assert snippet_starts(100, 8, "val").tolist() == [int(tick / 2 + tick * t) for t in range(8)]


@pytest.mark.parametrize("num_frames", [1, 2, 4, 5, 7, 11])
@pytest.mark.parametrize("mode", ["train", "val", "test"])
def test_short_videos_clamp_to_the_last_frame(num_frames, mode):
    indices = sample_frame_indices(num_frames, 8, mode, num_clips=2)
    assert indices.min() >= 0 and indices.max() == num_frames - 1
    snippets = indices.reshape(-1, L)
    # consecutive frames, then the last frame repeated
    for snippet in snippets:
        start = int(snippet[0])
        expected = [min(start + j, num_frames - 1) for j in range(L)]
        assert snippet.tolist() == expected


def test_one_frame_video_repeats_frame_zero():
    for mode in ("train", "val", "test"):
        assert sample_frame_indices(1, 8, mode).flatten().tolist() == [0] * 40


def test_test_mode_clips_interleave_and_one_clip_equals_val():
    assert torch.equal(snippet_starts(90, 8, "test", num_clips=1)[0], snippet_starts(90, 8, "val"))
    starts = snippet_starts(90, 8, "test", num_clips=10)
    assert starts.shape == (10, 8)
    # within a segment, clips are distinct and increasing when the segment is wide enough
    assert (starts[1:] > starts[:-1]).all()
    assert starts.max() <= 90 - L


def test_frame_indices_layout_is_segment_major():
    indices = sample_frame_indices(44, 8, "val")
    assert indices.shape == (40,)
    assert indices[:5].tolist() == [2, 3, 4, 5, 6]
    assert indices[5:10].tolist() == [7, 8, 9, 10, 11]


@pytest.mark.parametrize("bad", [dict(num_frames=0, num_segments=8), dict(num_frames=5, num_segments=0)])
def test_bad_arguments_are_named(bad):
    with pytest.raises(ValueError, match=next(iter(k for k, v in bad.items() if v == 0))):
        snippet_starts(mode="val", **bad)


def test_bad_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        snippet_starts(10, 2, "random")


@pytest.mark.parametrize("num_items,world", [(10, 1), (10, 2), (11, 3), (7, 4)])
def test_sharded_sampler_training_covers_and_pads(num_items, world):
    shards = [list(ShardedSampler(num_items, world, r, shuffle=True, seed=3, pad=True))
              for r in range(world)]
    lengths = {len(s) for s in shards}
    assert len(lengths) == 1 and lengths.pop() == -(-num_items // world)
    indices = [i for s in shards for i, _ in s]
    assert set(indices) == set(range(num_items))


@pytest.mark.parametrize("num_items,world", [(10, 2), (11, 3), (2, 4)])
def test_sharded_sampler_evaluation_gives_each_item_once(num_items, world):
    shards = [[i for i, _ in ShardedSampler(num_items, world, r, shuffle=False, pad=False)]
              for r in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(num_items))


def test_per_item_seeds_do_not_depend_on_world_size():
    single = dict(ShardedSampler(12, 1, 0, seed=5))
    split = dict(kv for r in range(2) for kv in ShardedSampler(12, 2, r, seed=5))
    assert single == split
    order_one = [i for i, _ in ShardedSampler(12, 1, 0, seed=5)]
    assert order_one[0::2] == [i for i, _ in ShardedSampler(12, 2, 0, seed=5)]


def test_epochs_reshuffle_and_reseed():
    sampler = ShardedSampler(50, seed=0)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert [i for i, _ in first] != [i for i, _ in second]
    assert sample_seed(0, 0, 3) != sample_seed(0, 1, 3) != sample_seed(1, 0, 3)
