"""Evaluation and prediction on real mp4 files written with PyAV inside the test."""

import json
import os
import sys
import types

import pytest
import torch

import tdn
from tdn.data import EvalTransform, VideoDataset, read_annotation_list, write_motion_dataset
from tdn.data.dataset import collate_samples
from tdn.engine import (EvalConfig, batch_to_input, load_model_for_inference, predict_videos,
                        run_evaluation)

SEGMENTS, SIZE = 2, 40


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    paths = write_motion_dataset(str(root), train_per_class=1, val_per_class=2, num_frames=14,
                                 size=48, seed=4, num_classes=3)
    (root / "videos" / "corrupt.mp4").write_bytes(b"\x1a\x45\xdf\xa3" + b"\x00" * 500)
    val = root / "val_with_corrupt.txt"
    val.write_text(open(paths["val"]).read() + "videos/corrupt.mp4 1\n")
    torch.manual_seed(0)
    model = tdn.build_model("tsn_resnet18", num_classes=3, num_segments=SEGMENTS)
    with torch.no_grad():  # make the classifier decisive so the argmax is not a coin toss
        model.new_fc.weight.normal_(0, 0.5)
    project = root / "model.safetensors"
    tdn.save_checkpoint(model, str(project), input_size=SIZE)
    # the authors' layout: {'state_dict': {'module.base_model.*', 'module.new_fc.*'}}
    authors = root / "authors.pth.tar"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               authors)
    return root, val, project, authors, paths


def _expected_scores(model, records, clips, crops):
    dataset = VideoDataset(records, SEGMENTS, EvalTransform(SIZE, num_crops=crops),
                           mode="test" if clips > 1 else "val", num_clips=clips)
    rows = []
    with torch.no_grad():
        for index in range(len(records)):
            batch = collate_samples([dataset[index]])
            rows.append(model(batch_to_input(batch.frames, torch.device("cpu"))).mean(dim=0))
    return torch.stack(rows)


@pytest.mark.parametrize("clips,crops", [(1, 1), (2, 3)])
def test_evaluate_matches_a_hand_computed_pass(setup, tmp_path, clips, crops):
    root, val, project, _, paths = setup
    metrics = run_evaluation(EvalConfig(
        checkpoint=str(project), val_list=str(val), data_root=str(root), input_size=SIZE,
        clips=clips, crops=crops, batch_size=4, workers=0, device="cpu", progress=False,
        output=str(tmp_path), class_names=paths["classes"]))
    assert metrics["skipped"] == 1 and metrics["count"] == 6 and metrics["views"] == clips * crops
    model, _ = load_model_for_inference(str(project))
    records = read_annotation_list(paths["val"], str(root))
    expected = _expected_scores(model, records, clips, crops)
    saved = torch.load(tmp_path / "scores.pt", weights_only=True)
    torch.testing.assert_close(saved["scores"], expected, rtol=1e-4, atol=1e-5)
    labels = torch.tensor([r.label for r in records])
    assert metrics["top1"] == pytest.approx(100 * (expected.argmax(1) == labels).float().mean().item())
    assert list(metrics["per_class_accuracy"]) == ["moving_left", "moving_right", "moving_up"]
    assert (tmp_path / "confusion.png").stat().st_size > 1000
    assert json.loads((tmp_path / "metrics.json").read_text())["top1"] == metrics["top1"]


def test_authors_checkpoint_gives_the_same_metrics(setup):
    root, val, project, authors, _ = setup
    common = dict(val_list=str(val), data_root=str(root), input_size=SIZE, workers=0,
                  device="cpu", progress=False)
    ours = run_evaluation(EvalConfig(checkpoint=str(project), **common))
    # the authors' files record neither T nor the architecture name: both are given/inferred
    theirs = run_evaluation(EvalConfig(checkpoint=str(authors), segments=SEGMENTS, **common))
    assert theirs["arch"] == "tsn_resnet18"
    assert (theirs["top1"], theirs["per_class_accuracy"]) == (ours["top1"], ours["per_class_accuracy"])


def test_predict_topk_on_video_files(setup):
    root, _, project, _, paths = setup
    model, config = load_model_for_inference(str(project))
    assert config["input_size"] == SIZE and config["num_segments"] == SEGMENTS
    videos = [str(root / line.split()[0]) for line in open(paths["val"]).read().splitlines()[:2]]
    videos.append(str(root / "videos" / "corrupt.mp4"))
    names = ["left", "right", "up"]
    predictions = predict_videos(model, videos, num_segments=SEGMENTS, input_size=SIZE, topk=2,
                                 class_names=names)
    assert [p.video for p in predictions] == videos
    assert predictions[2].error and not predictions[2].top
    records = read_annotation_list(paths["val"], str(root))[:2]
    expected = _expected_scores(model, records, 1, 1).softmax(dim=1)
    for prediction, probabilities in zip(predictions[:2], expected):
        indices = [i for i, _, _ in prediction.top]
        scores = [s for _, _, s in prediction.top]
        assert indices == probabilities.topk(2).indices.tolist()
        assert scores == pytest.approx(probabilities.topk(2).values.tolist(), abs=1e-5)
        assert [n for _, n, _ in prediction.top] == [names[i] for i in indices]
    with pytest.raises(ValueError, match="topk"):
        predict_videos(model, videos, num_segments=SEGMENTS, topk=0)


def test_predict_on_a_truncated_video_fails_with_the_reason(setup, tmp_path, capsys):
    from test_data_video import write_faststart_mp4

    from tdn.cli import main

    root, _, project, _, paths = setup
    whole = tmp_path / "whole.mp4"
    write_faststart_mp4(whole)
    half = tmp_path / "half.mp4"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert main(["predict", str(whole), "--checkpoint", str(project), "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["predict", str(half), "--checkpoint", str(project), "--device", "cpu"]) == 1
    out, err = capsys.readouterr()
    assert f"tdn predict: error: {half}: truncated video" in err and str(half) not in out


def test_without_matplotlib_the_plot_is_skipped_with_one_warning(setup, tmp_path, monkeypatch):
    from tdn.engine import evaluator

    root, val, project, _, _ = setup
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    warnings = []
    # the module's logger replaced, not captured: other tests reconfigure logging
    monkeypatch.setattr(evaluator, "log", types.SimpleNamespace(
        warning=lambda message, *a: warnings.append(message % a), info=lambda *a: None))
    metrics = run_evaluation(EvalConfig(
        checkpoint=str(project), val_list=str(val), data_root=str(root), input_size=SIZE,
        workers=0, device="cpu", progress=False, output=str(tmp_path)))
    assert json.loads((tmp_path / "metrics.json").read_text())["top1"] == metrics["top1"]
    assert (tmp_path / "scores.pt").is_file() and not (tmp_path / "confusion.png").exists()
    about_plots = [w for w in warnings if "matplotlib" in w]
    assert len(about_plots) == 1 and "confusion.png is skipped" in about_plots[0]


@pytest.mark.parametrize("flag", ["--output", "--save-scores"])
def test_an_unwritable_destination_fails_before_any_model_runs(setup, tmp_path, monkeypatch,
                                                               capsys, flag):
    from tdn.cli import main
    from tdn.engine import evaluator

    root, val, project, _, _ = setup
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(evaluator, "load_model_for_inference",
                        lambda *a, **k: pytest.fail("the model was loaded before the check"))
    destination = str(blocker / "inside")
    code = main(["evaluate", "--checkpoint", str(project), "--val-list", str(val),
                 "--data-root", str(root), flag, destination, "--device", "cpu"])
    assert code == 2
    assert f"{flag} " in capsys.readouterr().err and not os.path.exists(destination)
