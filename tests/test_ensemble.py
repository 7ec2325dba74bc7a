"""Ensembles: several checkpoints in one `tdn evaluate`, saved per-video scores, `tdn ensemble`."""

import json

import pytest
import torch

import tdn
from tdn.cli import main
from tdn.data import write_motion_dataset
from tdn.engine.evaluator import EvalConfig, run_evaluation
from tdn.engine.video_scores import VideoScores, fuse

SIZE = 40


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """Two tiny TSNs of different segment counts (2 and 3) and a 3-class video list."""
    root = tmp_path_factory.mktemp("ensemble")
    paths = write_motion_dataset(str(root), train_per_class=1, val_per_class=2, num_frames=14,
                                 size=48, seed=5, num_classes=3)
    checkpoints = []
    for seed, segments in ((0, 2), (1, 3)):
        torch.manual_seed(seed)
        model = tdn.build_model("tsn_resnet18", num_classes=3, num_segments=segments)
        with torch.no_grad():
            model.new_fc.weight.normal_(0, 0.5)
        checkpoints.append(str(root / f"t{segments}.safetensors"))
        tdn.save_checkpoint(model, checkpoints[-1], input_size=SIZE)
    return root, paths, checkpoints


def _evaluate(root, paths, checkpoints, **options):
    return run_evaluation(EvalConfig(
        checkpoint=list(checkpoints), val_list=paths["val"], data_root=str(root),
        input_size=SIZE, batch_size=3, workers=0, device="cpu", progress=False, **options))


@pytest.fixture(scope="module")
def saved(two_models, tmp_path_factory):
    """Each model evaluated alone, its per-video scores saved, and both as one ensemble."""
    root, paths, checkpoints = two_models
    folder = tmp_path_factory.mktemp("scores")
    files, alone = [], []
    for checkpoint, name in zip(checkpoints, ("t2", "t3")):
        files.append(str(folder / f"{name}.scores"))
        alone.append(_evaluate(root, paths, [checkpoint], save_scores=files[-1]))
    together = _evaluate(root, paths, checkpoints, save_scores=str(folder / "both.scores"),
                         output=str(folder / "both"))
    return files, alone, together, folder


def test_each_model_samples_with_its_own_segment_count(saved):
    files, alone, together, _ = saved
    assert [m["num_segments"] for m in alone] == [2, 3]
    assert [m["num_segments"] for m in together["models"]] == [2, 3]
    assert [m["top1"] for m in together["models"]] == [m["top1"] for m in alone]
    assert [VideoScores.load(f).num_segments for f in files] == [[2], [3]]


def test_the_ensemble_is_the_mean_of_the_models_probabilities(saved):
    files, _, together, folder = saved
    parts = [VideoScores.load(f) for f in files]
    both = VideoScores.load(str(folder / "both.scores"))
    assert both.kind == "probabilities" and both.videos == parts[0].videos
    expected = (parts[0].scores.softmax(-1) + parts[1].scores.softmax(-1)) / 2
    torch.testing.assert_close(both.scores, expected)
    labels = parts[0].labels
    top1 = 100 * (expected.argmax(1) == labels).float().mean().item()
    assert together["top1"] == pytest.approx(top1) and together["fuse"] == "softmax"
    # the output folder holds the same fused scores, and the metrics
    assert torch.equal(VideoScores.load(str(folder / "both" / "scores.pt")).scores, both.scores)
    assert json.loads((folder / "both" / "metrics.json").read_text())["top1"] == together["top1"]


def test_tdn_ensemble_fuses_saved_scores_like_evaluate_does(saved, tmp_path, capsys):
    files, _, together, _ = saved
    fused_file = tmp_path / "fused.scores"
    assert main(["ensemble", *files, "--save-scores", str(fused_file)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["top1"], summary["top5"]) == (together["top1"], together["top5"])
    assert summary["mean_class_accuracy"] == together["mean_class_accuracy"]
    assert summary["videos"] == 6 and summary["left_out"] == 0
    assert [f["num_segments"] for f in summary["files"]] == [[2], [3]]
    assert VideoScores.load(str(fused_file)).num_segments == [2, 3]


def test_logit_fusion_averages_raw_logits(saved):
    files, *_ = saved
    parts = [VideoScores.load(f) for f in files]
    fused, _ = fuse(parts, "logits")
    torch.testing.assert_close(fused.scores, (parts[0].scores + parts[1].scores) / 2)
    assert fused.kind == "logits"
    with pytest.raises(ValueError, match="holds probabilities"):
        fuse([fused, fuse(parts, "softmax")[0]], "logits")


def _scores(videos, labels, rows):
    return VideoScores(videos, torch.tensor(labels), torch.tensor(rows, dtype=torch.float32))


def test_videos_missing_from_one_file_are_left_out_and_named():
    a = _scores(["x.mp4", "y.mp4", "z.mp4"], [0, 1, 1], [[2, 0], [0, 2], [1, 0]])
    b = _scores(["z.mp4", "x.mp4"], [1, 0], [[0, 3], [3, 0]])
    fused, left_out = fuse([a, b])
    assert fused.videos == ["x.mp4", "z.mp4"] and left_out == ["y.mp4"]
    assert fused.labels.tolist() == [0, 1]
    assert fused.scores[1].argmax() == 1  # z: b's confident vote outweighs a's mild one


def test_conflicting_labels_and_class_counts_are_refused():
    a = _scores(["x.mp4"], [0], [[1, 0]])
    with pytest.raises(ValueError, match="x.mp4 has label 1 in b.scores but 0 in a.scores"):
        fuse([a, _scores(["x.mp4"], [1], [[1, 0]])], names=["a.scores", "b.scores"])
    with pytest.raises(ValueError, match="3 classes"):
        fuse([a, _scores(["x.mp4"], [0], [[1, 0, 0]])])
    with pytest.raises(ValueError, match="no video in common"):
        fuse([a, _scores(["w.mp4"], [0], [[1, 0]])])


def test_bad_scores_files_give_one_line(tmp_path, capsys):
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    assert main(["ensemble", str(other), str(tmp_path / "missing.scores")]) == 2
    assert "not a scores file" in capsys.readouterr().err
    assert main(["ensemble", str(tmp_path / "missing.scores")]) == 2
    assert "scores file not found" in capsys.readouterr().err


def test_segments_for_several_checkpoints_must_be_one_or_one_each(two_models):
    root, paths, checkpoints = two_models
    with pytest.raises(ValueError, match="--segments: give one value, or one per --checkpoint"):
        _evaluate(root, paths, checkpoints, segments=[2, 3, 4])


def test_the_command_line_takes_several_checkpoints(two_models, saved, tmp_path, capsys):
    root, paths, checkpoints = two_models
    _, _, together, _ = saved
    scores = tmp_path / "cli.scores"
    code = main(["evaluate", "--checkpoint", checkpoints[0], "--checkpoint", checkpoints[1],
                 "--val-list", paths["val"], "--data-root", str(root), "--input-size", str(SIZE),
                 "--workers", "0", "--device", "cpu", "--no-progress",
                 "--save-scores", str(scores)])
    out = capsys.readouterr().out
    assert code == 0 and "(T=2)" in out and "(T=3)" in out
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["top1"] == together["top1"] and metrics["checkpoints"] == checkpoints
    assert VideoScores.load(str(scores)).num_segments == [2, 3]
