"""End to end through the command line: synth -> train -> resume -> evaluate -> predict."""

import json

import pytest

from tdn.cli import main


def _last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def test_synth_train_evaluate_predict(tmp_path, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["synth", "--output", str(data), "--classes", "2", "--train-per-class", "2",
                 "--val-per-class", "1", "--frames", "12", "--size", "48"]) == 0
    assert len((data / "train.txt").read_text().splitlines()) == 4
    assert (data / "classes.txt").read_text().split() == ["moving_left", "moving_right"]
    train = ["train", "--train-list", str(data / "train.txt"), "--val-list", str(data / "val.txt"),
             "--data-root", str(data), "--arch", "tsn_resnet18", "--segments", "2",
             "--batch-size", "2", "--lr", "0.01", "--input-size", "40", "--output", str(run),
             "--workers", "0", "--no-progress", "--flip-label-swaps", "0:1", "--device", "cpu",
             "--class-names", str(data / "classes.txt")]
    assert main(train + ["--epochs", "1"]) == 0
    first = _last_json(capsys.readouterr().out)
    assert first["epoch"] == 1
    assert main(train + ["--epochs", "2", "--resume"]) == 0
    second = _last_json(capsys.readouterr().out)
    assert second["epoch"] == 2
    history = json.loads((run / "log.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert "resumed from" in (run / "train.log").read_text()

    assert main(["evaluate", "--checkpoint", str(run / "checkpoint_best.pt"),
                 "--val-list", str(data / "val.txt"), "--data-root", str(data),
                 "--input-size", "40", "--crops", "3", "--clips", "2", "--workers", "0",
                 "--no-progress", "--device", "cpu", "--output", str(tmp_path / "eval")]) == 0
    metrics = _last_json(capsys.readouterr().out)
    # class names recorded at training time label the per-class accuracies
    assert set(metrics["per_class_accuracy"]) == {"moving_left", "moving_right"}
    assert metrics["count"] == 2 and metrics["views"] == 6 and 0 <= metrics["top1"] <= 100
    assert (tmp_path / "eval" / "confusion.png").exists()

    video = data / (data / "val.txt").read_text().split()[0]
    assert main(["predict", str(video), "--checkpoint", str(run / "checkpoint_last.pt"),
                 "--topk", "2", "--json",
                 "--device", "cpu"]) == 0
    prediction = _last_json(capsys.readouterr().out)
    assert prediction["video"] == str(video)
    assert {entry["label"] for entry in prediction["top"]} == {"moving_left", "moving_right"}
    assert sum(entry["score"] for entry in prediction["top"]) == pytest.approx(1.0, abs=1e-4)


def test_bad_input_is_a_message_not_a_traceback(tmp_path, capsys):
    assert main(["train", "--train-list", str(tmp_path / "missing.txt"), "--output",
                 str(tmp_path / "run"), "--workers", "0"]) == 2
    assert "train list not found" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--val-list",
                 str(tmp_path / "missing.txt")]) == 2
    assert "not found" in capsys.readouterr().err
