"""tdn index: lists from a class-per-folder tree (ratios, UCF101 split files, frame folders),
Something-Something V2 JSON and Kinetics CSV fixtures; unreadable videos skipped and reported;
the lists read back by tdn.data.annotations; one-line errors for bad input."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("av")

from tdn.cli import main
from tdn.data import indexing
from tdn.data.annotations import read_annotation_list, read_class_names
from tdn.data.synthetic import write_mp4

FRAMES = 6


def _video(path, frames=FRAMES):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    write_mp4(str(path), rng.integers(0, 255, (frames, 16, 16, 3), dtype=np.uint8))


def _broken(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(b"not a video at all")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """root/<class>/: 5 'jump' videos, 5 'run' videos, one broken 'run' video, a readme."""
    root = tmp_path_factory.mktemp("tree")
    for class_name in ("run", "jump"):
        for i in range(5):
            _video(root / class_name / f"v_{class_name}_{i}.mp4", frames=FRAMES + i)
    _broken(root / "run" / "v_run_broken.mp4")
    (root / "run" / "readme.txt").write_text("not an item")
    return root


def _index(*argv):
    return main(["index", *argv, "--no-progress", "--workers", "2"])


def test_folder_tree_with_ratios_writes_lists_train_reads(tree, tmp_path, capsys):
    assert _index("folder", str(tree), "--split", "0.6,0.4", "--output", str(tmp_path)) == 0
    out = capsys.readouterr()
    assert read_class_names(tmp_path / "classes.txt") == ["jump", "run"]
    train = read_annotation_list(tmp_path / "train.txt", data_root=tree)
    val = read_annotation_list(tmp_path / "val.txt", data_root=tree)
    assert (len(train), len(val)) == (6, 4)  # per class 3 + 2 of the 5 readable
    for records, label in ((train, 1), (val, 1)):
        assert sum(r.label == label for r in records) == len(records) // 2
    assert all(os.path.isfile(r.path) for r in train + val)
    assert all(("run" in r.path) == (r.label == 1) for r in train + val)
    assert not {r.path for r in train} & {r.path for r in val}
    skipped = (tmp_path / "skipped.txt").read_text().splitlines()
    assert len(skipped) == 1 and skipped[0].startswith("run/v_run_broken.mp4\t")
    assert "skipped 1" in out.err and "indexed 10 of 11 items, 2 classes" in out.out
    assert f"min {FRAMES}, median {FRAMES + 2}, max {FRAMES + 4}" in out.out


def test_ratios_are_deterministic_for_a_seed_and_change_with_it(tree, tmp_path):
    lists = []
    for seed in (1, 1, 2):
        folder = tmp_path / f"run{len(lists)}"
        assert _index("folder", str(tree), "--seed", str(seed), "--split", "0.6,0.4",
                      "--output", str(folder)) == 0
        lists.append((folder / "train.txt").read_text())
    assert lists[0] == lists[1]
    assert lists[0] != lists[2]


def test_three_way_split(tree, tmp_path):
    assert _index("folder", str(tree), "--split", "0.6,0.2,0.2", "--output", str(tmp_path)) == 0
    sizes = [len((tmp_path / f"{name}.txt").read_text().splitlines())
             for name in ("train", "val", "test")]
    assert sizes == [6, 2, 2]


def test_ucf101_split_files(tree, tmp_path, capsys):
    trainlist = tmp_path / "trainlist01.txt"
    trainlist.write_text("jump/v_jump_0.mp4 1\njump/v_jump_1.mp4 1\nrun/v_run_0.mp4 2\n"
                         "run/v_run_broken.mp4 2\n")
    testlist = tmp_path / "testlist01.txt"
    testlist.write_text("jump/v_jump_4.mp4\nrun/v_run_4.mp4\nrun/v_run_missing.mp4\n")
    out = tmp_path / "lists"
    assert _index("folder", str(tree), "--split-file", f"train={trainlist}",
                  "--split-file", f"val={testlist}", "--output", str(out)) == 0
    assert (out / "train.txt").read_text() == ("jump/v_jump_0.mp4 0\njump/v_jump_1.mp4 0\n"
                                               "run/v_run_0.mp4 1\n")
    assert (out / "val.txt").read_text() == "jump/v_jump_4.mp4 0\nrun/v_run_4.mp4 1\n"
    skipped = dict(line.split("\t") for line in (out / "skipped.txt").read_text().splitlines())
    assert set(skipped) == {"run/v_run_broken.mp4", "run/v_run_missing.mp4"}
    assert "not in the tree" in skipped["run/v_run_missing.mp4"]
    assert "skipped 2" in capsys.readouterr().err


def test_frame_folders_get_their_image_count(tmp_path):
    from PIL import Image

    root = tmp_path / "frames"
    for class_name, count in (("a", 3), ("b", 4)):
        folder = root / class_name / "clip"
        folder.mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (8, 8)).save(folder / f"img_{i + 1:05d}.jpg")
    out = tmp_path / "lists"
    assert _index("folder", str(root), "--split", "1,0", "--output", str(out)) == 0
    assert (out / "train.txt").read_text() == "a/clip 3 0\nb/clip 4 1\n"
    records = read_annotation_list(out / "train.txt", data_root=root)
    assert [r.num_frames for r in records] == [3, 4]


def test_truncated_video_is_skipped(tmp_path):
    root = tmp_path / "root"
    _video(root / "a" / "whole.mp4", frames=12)
    _video(root / "a" / "cut.mp4", frames=12)
    data = (root / "a" / "cut.mp4").read_bytes()
    (root / "a" / "cut.mp4").write_bytes(data[: len(data) // 2])
    items = [indexing.Item("a/whole.mp4", "a", "train"), indexing.Item("a/cut.mp4", "a", "train")]
    probed, skipped = indexing.probe_items(str(root), items, decoder="av", workers=2,
                                           progress=False)
    assert [(p.item.path, p.num_frames) for p in probed] == [("a/whole.mp4", 12)]
    assert [s.item.path for s in skipped] == ["a/cut.mp4"]
    assert skipped[0].reason


def _something_fixture(tmp_path):
    labels = {"Pushing something from left to right": "1", "Holding something": "0"}
    train = [{"id": "11", "label": "pushing a cup from left to right",
              "template": "Pushing [something] from left to right", "placeholders": ["a cup"]},
             {"id": "12", "label": "holding a pen", "template": "Holding [something]",
              "placeholders": ["a pen"]},
             {"id": "13", "label": "holding a pen", "template": "Holding [something]",
              "placeholders": ["a pen"]}]
    validation = [{"id": "21", "label": "holding a box", "template": "Holding [something]",
                   "placeholders": ["a box"]}]
    files = {}
    for name, content in (("labels", labels), ("train", train), ("validation", validation)):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(content))
    videos = tmp_path / "20bn-something-something-v2"
    for video_id in ("11", "12", "21"):  # 13 was never downloaded
        _video(videos / f"{video_id}.webm")
    return files, videos


def test_something_v2(tmp_path, capsys):
    files, videos = _something_fixture(tmp_path)
    out = tmp_path / "lists"
    assert _index("ssv2", "--videos", str(videos), "--labels", str(files["labels"]),
                  "--train", str(files["train"]), "--val", str(files["validation"]),
                  "--output", str(out)) == 0
    assert read_class_names(out / "classes.txt") == ["Holding something",
                                                     "Pushing something from left to right"]
    assert (out / "train.txt").read_text() == "11.webm 1\n12.webm 0\n"
    assert (out / "val.txt").read_text() == "21.webm 0\n"
    assert (out / "skipped.txt").read_text().startswith("13.webm\tfile not found")
    assert "skipped 1" in capsys.readouterr().err


def test_something_v2_unknown_template_is_one_line_error(tmp_path, capsys):
    files, videos = _something_fixture(tmp_path)
    files["train"].write_text(json.dumps([{"id": "1", "template": "Spinning [something]"}]))
    assert _index("ssv2", "--videos", str(videos), "--labels", str(files["labels"]),
                  "--train", str(files["train"]), "--output", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tdn index: error: --train:") and "'Spinning something'" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_kinetics_csv_with_pattern(tmp_path):
    videos = tmp_path / "kinetics"
    _video(videos / "train" / "abseiling" / "aaa_000010_000020.mp4")
    _video(videos / "train" / "zumba" / "bbb_000000_000010.mp4")
    _video(videos / "validate" / "zumba" / "ccc_000005_000015.mp4")
    train_csv = tmp_path / "train.csv"
    train_csv.write_text("label,youtube_id,time_start,time_end,split\n"
                         "abseiling,aaa,10,20,train\nzumba,bbb,0,10,train\n")
    val_csv = tmp_path / "validate.csv"
    val_csv.write_text("label,youtube_id,time_start,time_end,split\nzumba,ccc,5,15,validate\n"
                       "abseiling,ddd,1,11,validate\n")
    out = tmp_path / "lists"
    assert _index("kinetics", str(train_csv), str(val_csv), "--videos", str(videos),
                  "--pattern", "{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4",
                  "--output", str(out)) == 0
    assert read_class_names(out / "classes.txt") == ["abseiling", "zumba"]
    assert (out / "train.txt").read_text() == ("train/abseiling/aaa_000010_000020.mp4 0\n"
                                               "train/zumba/bbb_000000_000010.mp4 1\n")
    assert (out / "val.txt").read_text() == "validate/zumba/ccc_000005_000015.mp4 1\n"
    assert "validate/abseiling/ddd_000001_000011.mp4" in (out / "skipped.txt").read_text()


@pytest.mark.parametrize("argv, message", [
    (["folder", "{missing}"], "root: folder not found"),
    (["folder", "{tree}", "--split", "0.5,0.6"], "--split: fractions must lie in [0, 1] and sum"),
    (["folder", "{tree}", "--split", "half"], "--split: expected comma-separated"),
    (["folder", "{tree}", "--split-file", "train={missing}"], "--split-file: file not found"),
    (["kinetics", "{csv}", "--videos", "{tree}"], "csv: {csv} lacks the column(s) time_end"),
    (["kinetics", "{good_csv}", "--videos", "{tree}", "--pattern", "{{clip}}.mp4"],
     "--pattern: '{{clip}}.mp4' cannot be filled"),
    (["ssv2", "--videos", "{tree}", "--labels", "{csv}", "--train", "{csv}"],
     "--labels: {csv} is not valid JSON"),
    (["ssv2", "--videos", "{tree}", "--labels", "{csv}"], "give --train and/or --val"),
])
def test_bad_input_is_a_one_line_error_naming_the_argument(tree, tmp_path, capsys, argv,
                                                           message):
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text("label,youtube_id,time_start,split\nx,y,1,train\n")
    good_csv = tmp_path / "good.csv"
    good_csv.write_text("label,youtube_id,time_start,time_end,split\nx,y,1,2,train\n")
    names = dict(tree=tree, missing=tmp_path / "nowhere", csv=csv_file, good_csv=good_csv)
    argv = [part.format(**names) for part in argv]
    assert _index(*argv, "--output", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tdn index: error: ")
    assert message.format(**names) in err
    assert len(err.splitlines()) == 1


def test_unknown_decoder_is_refused_before_probing(tree, tmp_path, capsys):
    with pytest.raises(SystemExit):
        _index("folder", str(tree), "--decoder", "ffmpeg", "--output", str(tmp_path))
    assert "--decoder" in capsys.readouterr().err
