"""The synthetic motion dataset: motion is the only class signal."""

import numpy as np
import pytest

from tdn.data import read_annotation_list, video_frame_count
from tdn.data.synthetic import DIRECTIONS, motion_clip, periodic_texture, write_motion_dataset


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_each_frame_is_the_previous_one_translated(name):
    clip = motion_clip(DIRECTIONS[name], num_frames=5, size=32, speed=3,
                       rng=np.random.default_rng(0))
    dy, dx = DIRECTIONS[name]
    for t in range(4):
        assert np.array_equal(np.roll(clip[t], (3 * dy, 3 * dx), axis=(0, 1)), clip[t + 1])


def test_texture_statistics_do_not_depend_on_the_class():
    # a periodic texture rolled anywhere is another draw of the same random field, so the
    # pixel statistics of single frames agree across directions up to sampling noise
    means = {name: np.mean([motion_clip(d, 3, 32, 2, np.random.default_rng(s)).mean()
                            for s in range(30)]) for name, d in DIRECTIONS.items()}
    spread = max(means.values()) - min(means.values())
    assert spread < 6.0, means
    texture = periodic_texture(32, np.random.default_rng(1), smoothness=2.0)
    assert texture.dtype == np.uint8 and texture.min() == 0 and texture.max() == 255


def test_written_dataset_lists_and_videos(tmp_path):
    paths = write_motion_dataset(str(tmp_path), train_per_class=2, val_per_class=1,
                                 num_frames=9, size=32, num_classes=3)
    train = read_annotation_list(paths["train"], str(tmp_path))
    assert sorted(r.label for r in train) == [0, 0, 1, 1, 2, 2]
    assert video_frame_count(train[0].path) == 9
    assert open(paths["classes"]).read().split() == ["moving_left", "moving_right", "moving_up"]
    with pytest.raises(ValueError, match="size"):
        write_motion_dataset(str(tmp_path), size=31)
