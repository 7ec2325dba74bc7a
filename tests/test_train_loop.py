"""The training loop on real (synthetic) mp4 files, on the CPU: loss goes down, files are
written, resume reproduces an uninterrupted run, accumulation matches a bigger batch."""

import json
import os

import pytest
import torch

import tdn
from tdn.data import write_motion_dataset
from tdn.engine import TrainConfig, load_training_state, run_training

SIZE = 40  # smallest comfortable frame for the models (they need >= 33)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    paths = write_motion_dataset(str(root), train_per_class=2, val_per_class=1, num_frames=12,
                                 size=48, seed=1, num_classes=4)
    return root, paths


def _config(dataset, output, **overrides):
    root, paths = dataset
    values = dict(train_list=paths["train"], val_list=paths["val"], data_root=str(root),
                  output=str(output), arch="tsn_resnet18", segments=2, input_size=SIZE,
                  epochs=2, batch_size=4, lr=0.01, lr_steps=(1,), workers=0, progress=False,
                  device="cpu", flip_label_swaps={0: 1, 1: 0})
    values.update(overrides)
    return TrainConfig(**values)


def _weights(path):
    return load_training_state(path)["state_dict"]


def test_a_few_steps_of_tdn_lower_the_loss(dataset, tmp_path):
    # the same 4 clips every epoch (one step each), no dropout: a working loop lowers the loss
    root, paths = dataset
    subset = tmp_path / "four.txt"
    subset.write_text("".join(open(paths["train"]).readlines()[:4]))
    summary = run_training(_config(dataset, tmp_path / "run", train_list=str(subset),
                                   val_list=None, arch="tdn_resnet18", epochs=6, dropout=0.0, batch_size=4,
                                   lr=0.03, lr_steps=(100,), flip=False, seed=3))
    history = json.loads((tmp_path / "run" / "log.json").read_text())
    losses = [row["train_loss"] for row in history]
    assert len(losses) == 6 and summary["epoch"] == 6
    assert losses[-1] < losses[0] * 0.9, losses


def test_run_folder_contents_and_checkpoint_formats(dataset, tmp_path):
    output = tmp_path / "run"
    # also the mixed-precision (bfloat16 autocast on CPU) and channels_last code paths
    run_training(_config(dataset, output, epochs=1, amp=True, channels_last=True))
    for name in ("checkpoint_last.pt", "checkpoint_best.pt", "log.csv", "log.json",
                 "curves.png", "config.json"):
        assert (output / name).stat().st_size > 0, name
    state = torch.load(output / "checkpoint_last.pt", weights_only=True)
    assert state["epoch"] == 1 and state["model"]["arch"] == "tsn_resnet18"
    assert set(state["history"][0]) >= {"train_loss", "val_top1", "lr"}
    # the project's loader rebuilds the network from the training checkpoint alone
    model = tdn.load_model(str(output / "checkpoint_best.pt"))
    assert model.num_classes == 4 and model.num_segments == 2
    assert (output / "log.csv").read_text().splitlines()[0].startswith("epoch,lr,train_loss")
    assert not [p for p in os.listdir(output) if ".tmp" in p]  # atomic writes left no debris


def test_resume_continues_exactly(dataset, tmp_path):
    # dropout on (RNG must be restored), augmentation on, schedule step at epoch 1
    straight = run_training(_config(dataset, tmp_path / "a", epochs=2, dropout=0.5))
    run_training(_config(dataset, tmp_path / "b", epochs=1, dropout=0.5))
    resumed = run_training(_config(dataset, tmp_path / "b", epochs=2, dropout=0.5,
                                   resume="auto"))
    a = load_training_state(str(tmp_path / "a" / "checkpoint_last.pt"))
    b = load_training_state(str(tmp_path / "b" / "checkpoint_last.pt"))
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"]
    momentum_a = [s["momentum_buffer"] for s in a["optimizer"]["state"].values()]
    momentum_b = [s["momentum_buffer"] for s in b["optimizer"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(momentum_a, momentum_b))
    assert straight["train_loss"] == resumed["train_loss"]
    assert [r["epoch"] for r in b["history"]] == [1, 2]


def test_resume_from_the_middle_of_an_epoch(dataset, tmp_path):
    # 8 clips, batch 1 x 2 accumulated: 4 optimiser steps per epoch; stop after 3 (mid-epoch 1)
    accumulate = 2
    common = dict(epochs=2, batch_size=1, accumulate=accumulate, dropout=0.5, val_list=None)
    straight = run_training(_config(dataset, tmp_path / "a", **common))
    stopped = run_training(_config(dataset, tmp_path / "b", stop_after_steps=3, **common))
    assert stopped == {"best_top1": -1.0, "best_epoch": -1, "completed": False}
    middle = load_training_state(str(tmp_path / "b" / "checkpoint_last.pt"))
    assert (middle["epoch"], middle["step_in_epoch"]) == (0, 3 * accumulate)
    resumed = run_training(_config(dataset, tmp_path / "b", resume="auto", **common))
    assert resumed["completed"]
    a = _weights(str(tmp_path / "a" / "checkpoint_last.pt"))
    b = _weights(str(tmp_path / "b" / "checkpoint_last.pt"))
    assert all(torch.equal(a[key], b[key]) for key in a)
    # the epoch's metrics include the micro-batches trained before the stop
    assert resumed["train_loss"] == straight["train_loss"]
    history = json.loads((tmp_path / "b" / "log.json").read_text())
    assert history[0]["train_loss"] == json.loads(
        (tmp_path / "a" / "log.json").read_text())[0]["train_loss"]


def test_resume_refuses_a_different_model(dataset, tmp_path):
    run_training(_config(dataset, tmp_path / "run", epochs=1))
    with pytest.raises(ValueError, match="num_segments"):
        run_training(_config(dataset, tmp_path / "run", epochs=2, segments=3, resume="auto"))


def test_gradient_accumulation_matches_the_full_batch(dataset, tmp_path):
    # frozen BN and no dropout make every sample independent of its batch-mates
    common = dict(epochs=1, dropout=0.0, bn_mode="frozen", val_list=None, lr=0.05)
    run_training(_config(dataset, tmp_path / "full", batch_size=4, **common))
    run_training(_config(dataset, tmp_path / "acc", batch_size=2, accumulate=2, **common))
    full, accumulated = _weights(str(tmp_path / "full" / "checkpoint_last.pt")), \
        _weights(str(tmp_path / "acc" / "checkpoint_last.pt"))
    moved = 0
    for key, value in full.items():
        torch.testing.assert_close(accumulated[key], value, rtol=1e-4, atol=1e-5)
    initial = tdn.build_model("tsn_resnet18", num_classes=4, num_segments=2).new_fc.weight
    moved = (full["new_fc.weight"] - initial).abs().max()
    assert moved > 0  # the comparison is not between two untouched models


def test_corrupt_training_items_are_skipped_and_counted(dataset, tmp_path, caplog):
    root, paths = dataset
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 1000)
    with_bad = tmp_path / "train.txt"
    lines = open(paths["train"]).read().splitlines()
    with_bad.write_text("\n".join(lines[:3] + [f"{tmp_path / 'broken.mp4'} 2"]) + "\n")
    with caplog.at_level("WARNING", logger="tdn"):
        summary = run_training(_config(dataset, tmp_path / "run", train_list=str(with_bad),
                                       val_list=None, epochs=1))
    assert summary["train_skipped"] == 1
    assert "broken.mp4" in caplog.text


def test_bad_configuration_names_the_argument(dataset, tmp_path):
    with pytest.raises(ValueError, match="--batch-size"):
        run_training(_config(dataset, tmp_path, batch_size=0))
    with pytest.raises(FileNotFoundError, match="train list"):
        run_training(_config(dataset, tmp_path, train_list=str(tmp_path / "none.txt")))
