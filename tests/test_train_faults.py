"""``tdn train`` under bad input and faults: nothing lost, nothing silently wrong.

Runs are tiny (TSN-ResNet18, 2 segments, 40-pixel crops, 2-4 clips) so that each check costs
a few optimiser steps at most; most checks stop before any training.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys

import pytest
import torch

from tdn.cli import main
from tdn.data import write_motion_dataset
from tdn.engine import TrainConfig, load_training_state, run_training
from tdn.engine.distributed import resolve_device
from tdn.engine.modelio import metadata_number
from tdn.engine.optim import build_optimizer, build_scheduler, epoch_start_lr, rebase_scheduler
from tdn.engine.resume_settings import reconcile
from tdn.engine.trainer import TrainingDiverged
from tdn.fileio import check_writable_folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    paths = write_motion_dataset(str(root), train_per_class=1, val_per_class=1, num_frames=10,
                                 size=40, seed=4, num_classes=2)
    return root, paths


def _config(dataset, output, **overrides) -> TrainConfig:
    root, paths = dataset
    values = dict(train_list=paths["train"], val_list=None, data_root=str(root),
                  output=str(output), arch="tsn_resnet18", segments=2, input_size=40,
                  epochs=1, batch_size=2, lr=0.01, lr_steps=(1,), workers=0, progress=False,
                  device="cpu", dropout=0.0, flip=False)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def stopped_run(dataset, tmp_path_factory):
    """A run saved in the middle of epoch 1 (batch 1: 2 steps per epoch, stopped after 1)."""
    output = tmp_path_factory.mktemp("stopped") / "run"
    summary = run_training(_config(dataset, output, batch_size=1, epochs=2,
                                   stop_after_steps=1))
    assert summary["completed"] is False
    return output


@pytest.fixture(autouse=True)
def _cli_logging_undone():
    """``tdn train`` (main) installs its own handlers and stops propagation on the "tdn"
    logger; undo that so that caplog sees the next test's records."""
    yield
    logger = logging.getLogger("tdn")
    for handler in [h for h in logger.handlers if getattr(h, "_tdn_cli", False)
                    or getattr(h, "_tdn_cli_file", False)]:
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = True


def _copy(run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


# ----------------------------------------------------------------------- 1. the run folder
def test_a_folder_holding_a_run_is_refused(dataset, stopped_run, tmp_path, capsys):
    output = _copy(stopped_run, tmp_path)
    before = (output / "checkpoint_last.pt").read_bytes()
    with pytest.raises(ValueError, match=r"holds a previous run.*--resume.*--overwrite"):
        run_training(_config(dataset, output))
    # the command line says the same in one line, and nothing was touched
    root, paths = dataset
    assert main(["train", "--train-list", paths["train"], "--output", str(output),
                 "--data-root", str(root), "--workers", "0", "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert "tdn train: error: --output" in error and "--overwrite" in error
    assert (output / "checkpoint_last.pt").read_bytes() == before


def test_overwrite_replaces_the_previous_run(dataset, stopped_run, tmp_path):
    output = _copy(stopped_run, tmp_path)
    summary = run_training(_config(dataset, output, overwrite=True, epochs=1))
    assert summary["completed"] and summary["epoch"] == 1
    assert load_training_state(str(output / "checkpoint_last.pt"))["epoch"] == 1


def test_an_unwritable_output_fails_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match=r"--output .*file.*cannot write there"):
        check_writable_folder(blocker / "run", "--output")
    assert main(["train", "--train-list", str(blocker), "--output", str(blocker / "run")]) == 2
    assert "--output" in capsys.readouterr().err


# ------------------------------------------------------------------- 2. resume and settings
def test_mid_epoch_resume_refuses_another_batch_size(dataset, stopped_run, tmp_path):
    output = _copy(stopped_run, tmp_path)
    with pytest.raises(ValueError, match=r"middle of an epoch with --batch-size 1.*"
                                         r"--batch-size 2 would skip"):
        run_training(_config(dataset, output, batch_size=2, epochs=2, resume="auto"))


def test_resume_reports_and_records_the_settings_it_overrides(dataset, stopped_run, tmp_path,
                                                              caplog):
    output = _copy(stopped_run, tmp_path)
    with caplog.at_level(logging.WARNING, logger="tdn"):
        run_training(_config(dataset, output, batch_size=1, epochs=2, resume="auto", lr=0.5,
                             init_from=str(output / "checkpoint_last.pt"),
                             stop_after_steps=1))
    assert "--lr 0.5 is ignored" in caplog.text and "0.01" in caplog.text
    assert "--init-from is ignored" in caplog.text
    record = json.loads((output / "config.json").read_text())
    assert record["lr"] == 0.01 and record["effective_lr"] == 0.01  # what really trained
    state = load_training_state(str(output / "checkpoint_last.pt"))
    assert state["config"]["lr"] == 0.01
    group = state["optimizer"]["param_groups"][0]
    assert group["initial_lr"] == pytest.approx(0.01 * group["lr_mult"])


def test_reconcile_keeps_the_checkpoints_schedule_and_flags_it():
    config = TrainConfig(train_list="t", output="o", lr=0.5, lr_steps=(3,))
    recorded = TrainConfig(train_list="t", output="o").as_dict()
    followed, notes = reconcile(config, recorded, mid_epoch=False, path="ck.pt")
    assert followed.lr == 0.01 and followed.lr_steps == (30, 45, 55)
    assert [n.split()[0] for n in notes] == ["--lr", "--lr-steps"]
    # at an epoch boundary the batch size may change
    bigger = TrainConfig(train_list="t", output="o", batch_size=16)
    assert reconcile(bigger, recorded, mid_epoch=False, path="ck.pt")[0].batch_size == 16
    with pytest.raises(ValueError, match="--batch-size"):
        reconcile(bigger, recorded, mid_epoch=True, path="ck.pt")


def test_the_schedule_keeps_its_epochs_when_steps_per_epoch_change():
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, lr=1.0)
    scheduler = build_scheduler(optimizer, steps_per_epoch=4, milestones=[2], gamma=0.1)
    for _ in range(4):  # epoch 1 at 4 steps per epoch
        optimizer.step()
        scheduler.step()
    assert rebase_scheduler(scheduler, steps_per_epoch=2, epochs_done=1)
    lrs = []
    for _ in range(4):  # epoch 2 (lr 1), then epoch 3 (after the milestone: 0.1)
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1])
    assert epoch_start_lr(scheduler, 1) == pytest.approx(1.0)
    assert epoch_start_lr(scheduler, 2) == pytest.approx(0.1)


# ---------------------------------------------------------------- 4. unreadable items
def _broken_list(tmp_path, count=2):
    lines = []
    for k in range(count):
        (tmp_path / f"broken{k}.mp4").write_bytes(b"\x00" * 500)
        lines.append(f"{tmp_path / f'broken{k}.mp4'} {k % 2}")
    path = tmp_path / "broken.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_an_epoch_without_a_readable_item_fails(dataset, tmp_path):
    with pytest.raises(ValueError, match=r"epoch 1: none of the 2 training item\(s\) could be "
                                         r"read.*--train-list"):
        run_training(_config(dataset, tmp_path / "run", train_list=_broken_list(tmp_path)))
    assert not (tmp_path / "run" / "checkpoint_best.pt").exists()


def test_a_validation_pass_without_a_readable_item_fails(dataset, tmp_path, caplog):
    root, paths = dataset
    mixed = tmp_path / "mixed.txt"  # one readable item of three: a loud warning
    broken = _broken_list(tmp_path)
    mixed.write_text(open(paths["train"]).readline() + open(broken).read())
    with caplog.at_level(logging.WARNING, logger="tdn"):
        with pytest.raises(ValueError, match=r"none of the 2 validation item.*--val-list"):
            run_training(_config(dataset, tmp_path / "run", train_list=str(mixed),
                                 val_list=broken, batch_size=3))
    assert "2 of 3 training items (67%) were unreadable" in caplog.text


# ---------------------------------------------------------------- 5. non-finite numbers
@pytest.mark.parametrize("flag,value", [("lr", math.nan), ("lr", -1.0), ("lr_gamma", math.inf),
                                        ("momentum", math.nan), ("dropout", 1.0),
                                        ("weight_decay", -0.1), ("warmup_epochs", math.inf),
                                        ("clip_grad_norm", math.nan),
                                        ("crop_scales", (1.0, math.nan)),
                                        ("lr_steps", (math.nan,))])
def test_numeric_settings_must_be_finite_and_in_range(dataset, tmp_path, flag, value):
    with pytest.raises(ValueError, match="--" + flag.replace("_", "-")):
        run_training(_config(dataset, tmp_path, **{flag: value}))


def test_the_command_line_refuses_lr_nan(dataset, tmp_path, capsys):
    root, paths = dataset
    assert main(["train", "--train-list", paths["train"], "--output", str(tmp_path / "run"),
                 "--lr", "nan", "--workers", "0", "--device", "cpu"]) == 2
    assert "--lr must be a finite number > 0, got nan" in capsys.readouterr().err


def test_a_diverging_loss_stops_with_the_step_and_a_hint(dataset, tmp_path):
    # one clip per step, an absurd lr and no clipping: the weights overflow within steps
    with pytest.raises(TrainingDiverged, match=r"(loss became (nan|inf) at optimiser step \d+ "
                                               r"\(epoch \d, micro-batch \d of 2\)|weights are "
                                               r"no longer finite).*Lower --lr"):
        run_training(_config(dataset, tmp_path / "run", batch_size=1, lr=1e30,
                             clip_grad_norm=None, epochs=4))
    for name in ("checkpoint_last.pt", "checkpoint_best.pt"):
        if (tmp_path / "run" / name).exists():  # what was saved is finite
            weights = load_training_state(str(tmp_path / "run" / name))["state_dict"]
            assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


# ------------------------------------------------------- 6. optional packages, 8. lr logged
def test_missing_matplotlib_skips_the_curves_with_one_warning(dataset, tmp_path, monkeypatch,
                                                            caplog):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with caplog.at_level(logging.WARNING, logger="tdn"):
        summary = run_training(_config(dataset, tmp_path / "run", scale_lr=True,
                                       lr_reference_batch=1))
    assert summary["completed"]
    assert caplog.text.count("matplotlib is not installed") == 1
    assert not (tmp_path / "run" / "curves.png").exists()
    assert (tmp_path / "run" / "checkpoint_last.pt").exists()
    # --scale-lr: lr 0.01 for a global batch of 1, trained with 2 clips per step -> 0.02;
    # the epoch's lr is the one its step used (the milestone at epoch 1 comes after it)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["effective_lr"] == pytest.approx(0.02)
    history = json.loads((tmp_path / "run" / "log.json").read_text())
    assert history[0]["lr"] == pytest.approx(0.02)


# ------------------------------------------------------------ 7. --init-from --backbone-only
def test_init_from_another_class_count_with_backbone_only(dataset, stopped_run, tmp_path):
    source = str(stopped_run / "checkpoint_last.pt")  # 2 classes
    with pytest.raises(ValueError, match="classes"):
        run_training(_config(dataset, tmp_path / "a", num_classes=3, init_from=source,
                             epochs=1, lr=1e-9))
    run_training(_config(dataset, tmp_path / "b", num_classes=3, init_from=source,
                         backbone_only=True, epochs=1, lr=1e-9))
    trained = load_training_state(str(tmp_path / "b" / "checkpoint_last.pt"))["state_dict"]
    started = load_training_state(source)["state_dict"]
    key = "base_model.conv1.weight"
    torch.testing.assert_close(trained[key], started[key], rtol=0, atol=1e-6)
    assert trained["new_fc.weight"].shape[0] == 3


def test_backbone_only_needs_init_from(dataset, tmp_path):
    with pytest.raises(ValueError, match="--backbone-only .*--init-from"):
        run_training(_config(dataset, tmp_path, backbone_only=True))


# --------------------------------------------------------------------- 8. one-line errors
@pytest.mark.parametrize("device,message", [("tpu", "not a device"),
                                            ("cuda:0", "CUDA is not available"),
                                            ("mps", "only auto, cpu")])
def test_a_device_this_machine_lacks_is_named(device, message):
    if torch.cuda.is_available() and device.startswith("cuda"):
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match=f"--device '{device}'.*{message}"):
        resolve_device(device)


def test_flip_label_swaps_outside_the_classes_are_named(dataset, tmp_path, capsys):
    with pytest.raises(ValueError, match="--flip-label-swaps: label 86 is not one of the 2"):
        run_training(_config(dataset, tmp_path / "a", flip_label_swaps={86: 87, 87: 86}))
    root, paths = dataset
    assert main(["train", "--train-list", paths["train"], "--output", str(tmp_path / "b"),
                 "--flip-label-swaps", "1:x"]) == 2
    assert "--flip-label-swaps" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not a state"])
def test_resume_of_a_damaged_checkpoint_is_one_line(dataset, stopped_run, tmp_path, capsys,
                                                   damage):
    output = _copy(stopped_run, tmp_path)
    path = output / "checkpoint_last.pt"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x80\x04not a pickle" * 10)
    else:
        torch.save({"format": "tdn-training-state", "epoch": "one"}, path)
    root, paths = dataset
    code = main(["train", "--train-list", paths["train"], "--output", str(output),
                 "--data-root", str(root), "--resume", "--workers", "0", "--device", "cpu",
                 "--segments", "2", "--input-size", "40", "--arch", "tsn_resnet18"])
    error = capsys.readouterr().err
    assert code == 2 and str(path) in error and "Traceback" not in error
    if damage == "not a state":
        assert "'epoch'" in error  # names the field


def test_resume_removes_a_killed_writers_temporary(dataset, stopped_run, tmp_path, caplog):
    output = _copy(stopped_run, tmp_path)
    stale = output / ".checkpoint_last.pt.k1ll3d.tmp"
    stale.write_bytes(b"\x00" * 4096)
    with caplog.at_level(logging.WARNING, logger="tdn"):
        run_training(_config(dataset, output, batch_size=1, epochs=2, resume="auto"))
    assert not stale.exists()
    assert "left by an interrupted write" in caplog.text


def test_metadata_errors_name_the_field_and_the_file():
    assert metadata_number({"input_size": "112"}, "input_size", int, 224, "m.pt") == 112
    assert metadata_number({}, "dropout", float, 0.5, "m.pt") == 0.5
    with pytest.raises(ValueError, match=r"m\.pt: metadata field 'input_size' should be an "
                                         r"integer, got 'big'"):
        metadata_number({"input_size": "big"}, "input_size", int, 224, "m.pt")


@pytest.mark.parametrize("template,message", [
    ("img_{:05d", "not a pattern of one frame index"),
    ("img_{name}.jpg", "not a pattern of one frame index"),
    ("img_{:05s}.jpg", "not a pattern of one frame index"),
    ("frame.jpg", "no place for the frame index"),
])
def test_a_bad_image_template_is_one_line_naming_the_flag(dataset, tmp_path, capsys, template,
                                                          message):
    with pytest.raises(ValueError, match=f"--image-template.*{message}"):
        _config(dataset, tmp_path / "a", image_template=template).validate()
    root, paths = dataset
    code = main(["train", "--train-list", paths["train"], "--output", str(tmp_path / "b"),
                 "--data-root", str(root), "--image-template", template, "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "--image-template" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()
