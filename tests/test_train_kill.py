"""SIGKILL a real ``tdn train`` process mid-epoch and again in the middle of a checkpoint
write, resume it each time, and compare every tensor of the result with an uninterrupted run,
bit for bit.

The kills come from inside the process (a driver patches two functions, then runs ``tdn
train``'s ``main``) so that they land at exact points: right after an optimiser step whose
checkpoint is not written yet, and after a checkpoint's temporary file is written but before
it replaces ``checkpoint_last.pt``. SIGKILL runs no cleanup: what the process leaves behind is
what a power cut or the OOM killer would leave.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import torch

from tdn.data import write_motion_dataset
from tdn.engine import load_training_state

DRIVER = """
import os, signal, sys
import torch
import tdn.engine.trainer as trainer

kill_after_step = int(os.environ.get("KILL_AFTER_STEP", "0"))
kill_in_write = int(os.environ.get("KILL_IN_WRITE", "0"))
if kill_after_step:
    take_step = trainer.Trainer._optimizer_step

    def step_then_die(self):
        take_step(self)
        if self.scheduler.last_epoch == kill_after_step:
            os.kill(os.getpid(), signal.SIGKILL)

    trainer.Trainer._optimizer_step = step_then_die
if kill_in_write:
    save, writes = torch.save, []

    def save_then_die(obj, path, *args, **kwargs):
        save(obj, path, *args, **kwargs)  # the temporary is complete, not yet renamed
        if ".checkpoint_last.pt." in str(path):
            writes.append(path)
            if len(writes) == kill_in_write:
                os.kill(os.getpid(), signal.SIGKILL)

    torch.save = save_then_die
from tdn.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _train(driver, data, output, *extra, **kills):
    env = dict(os.environ, OMP_NUM_THREADS="1", **{k: str(v) for k, v in kills.items()},
               PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, str(driver), "train", "--train-list", str(data / "train.txt"),
               "--data-root", str(data), "--output", str(output), "--arch", "tsn_resnet18",
               "--segments", "2", "--input-size", "40", "--batch-size", "1", "--epochs", "2",
               "--lr", "0.01", "--lr-steps", "1", "--checkpoint-every", "1", "--workers", "0",
               "--device", "cpu", "--no-progress", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def _tensors(value, path=""):
    """Every tensor inside nested dicts and lists, by its path."""
    if isinstance(value, torch.Tensor):
        return {path: value}
    found = {}
    if isinstance(value, dict):
        for key, item in value.items():
            found.update(_tensors(item, f"{path}/{key}"))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found.update(_tensors(item, f"{path}/{index}"))
    return found


def test_sigkill_mid_epoch_and_mid_write_then_resume_is_bit_identical(tmp_path):
    data = tmp_path / "data"
    write_motion_dataset(str(data), train_per_class=2, val_per_class=1, num_frames=10, size=40,
                         seed=6, num_classes=2)  # 4 clips: 4 steps per epoch, 8 in all
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)

    straight = _train(driver, data, tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]

    interrupted = tmp_path / "interrupted"
    # step 3 trained, its checkpoint never written: the resume redoes it from step 2's
    killed = _train(driver, data, interrupted, KILL_AFTER_STEP=3)
    assert killed.returncode == -signal.SIGKILL
    assert load_training_state(str(interrupted / "checkpoint_last.pt"))["step_in_epoch"] == 2
    # resumed, it writes step 3's checkpoint, then dies inside the end-of-epoch-1 write
    killed = _train(driver, data, interrupted, "--resume", KILL_IN_WRITE=2)
    assert killed.returncode == -signal.SIGKILL
    leftovers = [p for p in os.listdir(interrupted) if p.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".checkpoint_last.pt.")
    assert load_training_state(str(interrupted / "checkpoint_last.pt"))["step_in_epoch"] == 3
    finished = _train(driver, data, interrupted, "--resume")
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert not [p for p in os.listdir(interrupted) if p.endswith(".tmp")]

    for name in ("checkpoint_last.pt", "checkpoint_best.pt"):
        expected = load_training_state(str(tmp_path / "straight" / name))
        resumed = load_training_state(str(interrupted / name))
        expected_tensors, resumed_tensors = _tensors(expected), _tensors(resumed)
        assert len(expected_tensors) > 100  # weights, momenta, random generator states
        assert expected_tensors.keys() == resumed_tensors.keys()
        for key, tensor in expected_tensors.items():
            assert torch.equal(tensor, resumed_tensors[key]), f"{name}: {key}"
        for row_a, row_b in zip(expected["history"], resumed["history"], strict=True):
            assert {k: v for k, v in row_a.items() if k != "seconds"} == \
                {k: v for k, v in row_b.items() if k != "seconds"}
