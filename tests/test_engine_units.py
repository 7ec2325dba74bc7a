"""Metrics, schedule, optimiser groups, batch-norm modes, RNG state and input conversion."""

import random

import numpy as np
import pytest
import torch
import torch.nn as nn

from tdn.engine import (WarmupStepSchedule, apply_batch_norm_mode, average_views, batch_to_input,
                        build_optimizer, build_scheduler, capture_rng_state,
                        classification_report, freeze_batch_norm_parameters, parameter_groups,
                        restore_rng_state, topk_correct)
from tdn.fileio import atomic_torch_save


def test_topk_correct_counts_and_caps_k():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.05], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 2, 0])
    assert topk_correct(logits, labels, ks=(1, 2, 5)) == [1, 1, 3]


def test_classification_report_per_class_and_confusion():
    scores = torch.eye(3)[[0, 0, 1, 2, 2, 2]]  # predictions 0 0 1 2 2 2
    labels = torch.tensor([0, 1, 1, 2, 2, 0])
    report = classification_report(scores, labels)
    assert report.confusion.tolist() == [[1, 0, 1], [1, 1, 0], [0, 0, 2]]
    assert report.top1 == pytest.approx(400 / 6)
    assert report.per_class_accuracy == [50.0, 50.0, 100.0]
    assert report.mean_class_accuracy == pytest.approx(200 / 3)
    absent = classification_report(torch.eye(4)[[0, 1]], torch.tensor([0, 1]))
    assert absent.per_class_accuracy[2:] == [None, None] and absent.mean_class_accuracy == 100.0
    with pytest.raises(ValueError, match="num-classes"):
        classification_report(torch.eye(3), torch.tensor([0, 1, 3]))


def test_average_views():
    logits = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    torch.testing.assert_close(average_views(logits, 2, "logits"),
                               torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    soft = average_views(logits, 2, "softmax")
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(2))


def test_warmup_step_schedule():
    schedule = WarmupStepSchedule(steps_per_epoch=10, milestones=[2, 3], gamma=0.1,
                                  warmup_epochs=1, warmup_divisor=100)
    assert schedule(0) == pytest.approx(0.01)
    assert schedule(5) == pytest.approx(0.01 + 0.99 * 0.5)
    assert [schedule(s) for s in (10, 19, 20, 29, 30)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    plain = WarmupStepSchedule(steps_per_epoch=4, milestones=[1])
    assert plain(0) == 1.0 and plain(4) == pytest.approx(0.1)


def _tiny():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1),
                         nn.BatchNorm2d(4))


def test_parameter_groups_follow_tsn_policy():
    model = nn.Module()
    model.base_model = _tiny()
    model.new_fc = nn.Linear(4, 2)
    groups = {g["name"]: g for g in parameter_groups(model, lr=0.1, weight_decay=5e-4,
                                                     fc_lr5=True)}
    assert groups["weight"]["weight_decay"] == 5e-4 and groups["weight"]["lr"] == 0.1
    assert groups["bias"]["lr"] == pytest.approx(0.2) and groups["bias"]["weight_decay"] == 0
    assert groups["norm"]["weight_decay"] == 0 and len(groups["norm"]["params"]) == 4
    assert groups["head_weight"]["lr"] == pytest.approx(0.5)
    assert groups["head_bias"]["lr"] == pytest.approx(1.0)
    count = sum(len(g["params"]) for g in groups.values())
    assert count == len(list(model.parameters()))


def test_scheduler_scales_every_group_and_saves_plainly(tmp_path):
    model = nn.Sequential(nn.Linear(2, 2))
    optimizer = build_optimizer(model, lr=0.1)
    scheduler = build_scheduler(optimizer, steps_per_epoch=2, milestones=[1])
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.01, 0.02])
    atomic_torch_save(scheduler.state_dict(), str(tmp_path / "s.pt"))
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    assert state["last_epoch"] == 2


@pytest.mark.parametrize("mode,trainable,eval_layers", [("train", 4, 0), ("partial", 2, 1),
                                                         ("frozen", 0, 2)])
def test_batch_norm_modes(mode, trainable, eval_layers):
    model = _tiny()
    freeze_batch_norm_parameters(model, mode)
    model.train()
    apply_batch_norm_mode(model, mode)
    bns = [model[1], model[3]]
    assert sum(p.requires_grad for bn in bns for p in bn.parameters()) == trainable
    assert sum(not bn.training for bn in bns) == eval_layers
    with pytest.raises(ValueError, match="bn mode"):
        freeze_batch_norm_parameters(model, "half")


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path):
    torch.manual_seed(1), random.seed(2), np.random.seed(3)
    atomic_torch_save(capture_rng_state(), str(tmp_path / "rng.pt"))
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(9), random.seed(9), np.random.seed(9)
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1] and np.random.rand() == expected[2]


@pytest.mark.parametrize("views,segments", [(1, 2), (3, 1), (2, 4)])
def test_batch_to_input_layout(views, segments):
    frames = torch.randint(0, 256, (2, views, segments * 5, 3, 6, 7), dtype=torch.uint8)
    clips = batch_to_input(frames, torch.device("cpu"), channels_last=True)
    assert clips.shape == (2 * views, segments * 15, 6, 7)
    assert clips.is_contiguous(memory_format=torch.channels_last)
    # channel 3..5 of clip 0 is frame 2 (of segment 1) of video 0, view 0
    expected = (frames[0, 0, 1].float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) \
        / torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(clips[0, 3:6], expected)
    with pytest.raises(ValueError, match="frames"):
        batch_to_input(frames[0], torch.device("cpu"))
