"""DistributedDataParallel on the CPU: 2 processes (torchrun, gloo) against 1 process with
the same global batch.

Batch norm in training mode normalises with per-process statistics, so split and unsplit
batches legitimately differ; the comparison freezes BN (``bn_mode="frozen"``: eval-mode
statistics, no BN parameter updates) and disables dropout, which makes every sample's
gradient independent of its batch-mates. Sampling and augmentation are seeded per item, so
both runs see the same crops. What remains must agree: DDP's gradient averaging, the sharded
sampler, and metrics summed across ranks.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from tdn.data import write_motion_dataset
from tdn.engine import EvalConfig, TrainConfig, load_training_state, run_evaluation, run_training

DRIVER = """
import json, os, sys
from tdn.engine import (EvalConfig, TrainConfig, run_evaluation, run_training,
                        setup_distributed, teardown_distributed)
context = setup_distributed("cpu")
config = TrainConfig(**json.loads(sys.argv[1]))
run_training(config, context)
# evaluation shards the list without padding and gathers the scores back
run_evaluation(EvalConfig(checkpoint=os.path.join(config.output, "checkpoint_last.pt"),
                          val_list=config.val_list, data_root=config.data_root,
                          input_size=config.input_size, clips=2, workers=0, device="cpu",
                          progress=False, output=os.path.join(config.output, "eval")), context)
teardown_distributed()
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    paths = write_motion_dataset(str(root), train_per_class=2, val_per_class=1, num_frames=12,
                                 size=48, seed=2, num_classes=4)
    return root, paths


def test_two_gloo_processes_match_one_process(dataset, tmp_path):
    root, paths = dataset
    common = dict(train_list=paths["train"], val_list=paths["val"], data_root=str(root),
                  arch="tdn_resnet18", segments=2, input_size=40, epochs=1, lr=0.05,
                  lr_steps=[10], dropout=0.0, bn_mode="frozen", workers=0, progress=False,
                  device="cpu", seed=5)
    # 8 training clips: one process x batch 4, or two processes x batch 2 -> 2 steps each
    run_training(TrainConfig(**common, output=str(tmp_path / "single"), batch_size=4))

    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    distributed = dict(common, output=str(tmp_path / "ddp"), batch_size=2)
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(driver), json.dumps(distributed)],
        capture_output=True, text=True, timeout=300, env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]

    single = load_training_state(str(tmp_path / "single" / "checkpoint_last.pt"))
    ddp = load_training_state(str(tmp_path / "ddp" / "checkpoint_last.pt"))
    assert len(ddp["rng"]) == 2  # both ranks' generators were saved
    for key, value in single["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][key], value, rtol=1e-4, atol=1e-5,
                                   msg=lambda m: f"{key}: {m}")
    # metrics are reduced over ranks: same loss and accuracy over the same 8 + 4 items
    for name in ("train_loss", "train_top1", "val_loss", "val_top1"):
        assert ddp["history"][0][name] == pytest.approx(single["history"][0][name], abs=1e-4)
    # and the weights did move
    assert not torch.equal(single["state_dict"]["new_fc.bias"], torch.zeros(4))

    # 2-process evaluation (4 videos, uneven shards of the 2-clip views) = 1-process evaluation
    alone = run_evaluation(EvalConfig(
        checkpoint=str(tmp_path / "ddp" / "checkpoint_last.pt"), val_list=paths["val"],
        data_root=str(root), input_size=40, clips=2, workers=0, device="cpu", progress=False,
        output=str(tmp_path / "eval")))
    together = json.loads((tmp_path / "ddp" / "eval" / "metrics.json").read_text())
    assert together["count"] == alone["count"] == 4
    assert together["per_class_accuracy"] == alone["per_class_accuracy"]
    scores_alone = torch.load(tmp_path / "eval" / "scores.pt", weights_only=True)
    scores_together = torch.load(tmp_path / "ddp" / "eval" / "scores.pt", weights_only=True)
    assert scores_together["indices"].tolist() == [0, 1, 2, 3]
    torch.testing.assert_close(scores_together["scores"], scores_alone["scores"])
