"""``tdn explain`` and :mod:`tdn.explain`: per-segment Grad-CAM of a TDN that learnt motion.

A tdn_resnet18 is trained once per session, for a few steps, to tell whether a textured square
slides left, right or stands still over a static texture of the same kind (tests/_moving_object.py):
only the motion shows where the square is. Its heat maps must then put far more of their mass on
the square than the square's share of the frame.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tdn
from _moving_object import CLASSES, moving_object_clip, training_batch

pytest.importorskip("av")
pytest.importorskip("matplotlib")

from tdn.explain import class_activation_maps, explain_video  # noqa: E402

SEGMENTS, SIZE, OBJECT, SPEED = 2, 64, 20, 2
FRAMES = SEGMENTS * 5
# At 64x64 input layer 2 gives 8x8 maps (layer 4, the default, 2x2: too coarse to score).
LAYER = "base_model.layer2_bak.1"
TRAIN_STEPS = 14


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = tdn.build_model("tdn_resnet18", num_classes=len(CLASSES), num_segments=SEGMENTS,
                            dropout=0.0)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(TRAIN_STEPS):
        clips, labels = training_batch(9, FRAMES, SIZE, rng, OBJECT, SPEED)
        loss = torch.nn.functional.cross_entropy(model(clips), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    # After so few steps the running statistics (momentum 0.1) are far from the batch ones
    # that the training saw: recompute them as plain averages over a few batches.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        for _ in range(3):
            model(training_batch(9, FRAMES, SIZE, rng, OBJECT, SPEED)[0])
    folder = tmp_path_factory.mktemp("explain")
    path = folder / "motion.safetensors"
    tdn.save_checkpoint(model, path, input_size=SIZE)
    (folder / "classes.txt").write_text("".join(name + "\n" for name in CLASSES))
    return path


@pytest.fixture(scope="session")
def model(trained_checkpoint):
    return tdn.load_model(trained_checkpoint).eval()


@pytest.fixture(scope="session")
def sliding_right(tmp_path_factory):
    """An mp4 of the square sliding right, and the square's mask in each of its frames."""
    from tdn.data.synthetic import write_mp4

    frames, masks = moving_object_clip(1, FRAMES, SIZE, np.random.default_rng(7), OBJECT, SPEED)
    path = tmp_path_factory.mktemp("clip") / "sliding_right.mp4"
    write_mp4(str(path), frames)
    return path, masks


def mass_over_share(cams: torch.Tensor, masks: np.ndarray, indices: list[int]) -> list[float]:
    """Per segment: the heat map's mass inside the square, over the square's area share."""
    ratios = []
    for t, cam in enumerate(cams):
        mask = torch.from_numpy(masks[indices[t * 5 + 2]]).float()  # the centre frame's
        inside = float((cam * mask).sum() / cam.sum())
        ratios.append(inside / float(mask.mean()))
    return ratios


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_heat_maps_sit_on_the_moving_object(model, sliding_right, tmp_path, method):
    video, masks = sliding_right
    result = explain_video(model, str(video), tmp_path, input_size=SIZE, layer=LAYER,
                           method=method, class_names=list(CLASSES))
    assert result.class_name == "moving_right"  # the model learnt the task
    ratios = mass_over_share(result.cams, masks, result.sample.indices)
    # the square is ~10% of the frame; its share of the heat is at least twice that
    assert min(ratios) > 2.0, ratios


def test_explain_command_writes_the_figures(trained_checkpoint, sliding_right, tmp_path,
                                            capfd):
    from tdn.commands.explain import main

    video, _ = sliding_right
    names = trained_checkpoint.parent / "classes.txt"
    assert main([str(video), "--checkpoint", str(trained_checkpoint), "--output",
                 str(tmp_path), "--class", "moving_left", "--class-names", str(names),
                 "--layer", LAYER, "--topk", "2"]) == 0
    out = capfd.readouterr().out
    assert "moving_right" in out.splitlines()[0]  # the top-2, best first
    assert "explained moving_left" in out
    cams = np.load(tmp_path / "cam.npy")
    assert cams.shape == (SEGMENTS, SIZE, SIZE) and cams.dtype == np.float32
    assert 0.0 <= cams.min() and cams.max() == pytest.approx(1.0)
    from PIL import Image

    with Image.open(tmp_path / "explain.gif") as gif:
        assert gif.n_frames == FRAMES
    with Image.open(tmp_path / "explain.png") as png:
        assert png.width > png.height  # the segments side by side


def test_maps_fold_back_per_video(model):
    """Two clips in one batch get the same maps as each clip alone: the N*T rows of the
    backbone are folded back into the right (video, segment) places."""
    rng = np.random.default_rng(3)
    clips, _ = training_batch(2, FRAMES, SIZE, rng, OBJECT, SPEED)
    both = class_activation_maps(model, clips, [0, 1], LAYER)
    assert both.cams.shape == (2, SEGMENTS, SIZE, SIZE)
    for n in range(2):
        alone = class_activation_maps(model, clips[n:n + 1], n, LAYER)
        torch.testing.assert_close(both.cams[n], alone.cams[0], rtol=1e-4, atol=1e-5)


def test_default_layer_is_the_last_block_of_layer4(model):
    from tdn.explain import default_layer

    assert default_layer(model) == "base_model.layer4_bak.1"
    clips, _ = training_batch(1, FRAMES, SIZE, np.random.default_rng(4), OBJECT, SPEED)
    result = class_activation_maps(model, clips)
    assert result.layer == "base_model.layer4_bak.1"
    assert int(result.classes[0]) == int(result.logits.argmax())  # the predicted class


@pytest.mark.parametrize("kwargs, words", [
    ({"layer": "base_model.layer9"}, "layer 'base_model.layer9'"),
    ({"layer": "new_fc"}, "feature maps"),
    ({"classes": 3}, "class indices"),
    ({"classes": [0, 1]}, "one per clip"),
    ({"method": "lime"}, "method"),
])
def test_bad_arguments_name_the_argument(model, kwargs, words):
    clips, _ = training_batch(1, FRAMES, SIZE, np.random.default_rng(5), OBJECT, SPEED)
    with pytest.raises(ValueError, match=words):
        class_activation_maps(model, clips, **kwargs)


def test_class_by_name_or_index():
    from tdn.explain import resolve_class

    assert resolve_class("moving_up", ["moving_left", "moving_up"], 2) == 1
    assert resolve_class("1", None, 2) == 1
    with pytest.raises(ValueError, match="neither a class index nor a class name"):
        resolve_class("jumping", ["moving_left"], 1)
    with pytest.raises(ValueError, match="out of range"):
        resolve_class(5, None, 3)
