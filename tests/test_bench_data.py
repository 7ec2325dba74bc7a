"""Smoke test of benchmarks/bench_data.py on tiny videos and a tiny model: a run completes,
appends one row per (decoder, container, workers) plus the training step to the CSV, one run
to the JSON, and draws the plot. Speed is never asserted here."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("av")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_data  # noqa: E402

TINY = ["--videos", "1", "--seconds", "1", "--fps", "8", "--short-side", "64", "--clips", "2",
        "--segments", "2", "--input-size", "64", "--arch", "tdn_resnet18", "--model-steps", "1",
        "--workers", "0,1", "--decoders", "av"]


def test_a_tiny_run_writes_rows_json_and_plot(tmp_path, capsys):
    out = tmp_path / "results"
    argv = TINY + ["--cache-dir", str(tmp_path / "cache"), "--output-dir", str(out)]
    assert bench_data.main(argv) == 0
    assert "generating" in capsys.readouterr().err
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".mp4", ".webm"]
    with open(out / "bench_data.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    loader = [(r["decoder"], r["container"], r["workers"]) for r in rows if r["section"] == "loader"]
    assert sorted(loader) == [("av", c, w) for c in ("mp4", "webm") for w in ("0", "1")]
    assert all(float(r["clips_per_s"]) > 0 for r in rows)
    assert all(r["clips"] == "2" for r in rows if r["section"] == "loader")
    (model,) = [r for r in rows if r["section"] == "model"]
    assert model["arch"] == "tdn_resnet18"
    assert float(model["clips_per_s"]) == pytest.approx(1 / float(model["median_step_s"]),
                                                         rel=1e-3)
    runs = json.loads((out / "bench_data.json").read_text())
    assert len(runs) == 1 and len(runs[0]["rows"]) == 5
    assert set(runs[0]["verdicts"]) == {"av,mp4", "av,webm"}
    if (out / "bench_data.png").exists() is False:
        pytest.importorskip("matplotlib")
        pytest.fail("matplotlib is installed but no plot was written")
    # a second run appends and reuses the cached videos
    assert bench_data.main(argv + ["--no-model", "--no-plots"]) == 0
    assert "generating" not in capsys.readouterr().err
    assert len(json.loads((out / "bench_data.json").read_text())) == 2


def test_workers_needed_picks_the_fewest_that_keep_up_or_estimates():
    rows = [dict(decoder="av", container="mp4", workers=w, clips_per_s=rate)
            for w, rate in ((0, 1.0), (1, 1.5), (2, 3.0))]
    rows += [dict(decoder="av", container="webm", workers=w, clips_per_s=rate)
             for w, rate in ((0, 0.5), (2, 1.0))]
    verdicts = bench_data.workers_needed(rows, model_clips_per_s=2.0)
    assert verdicts[("av", "mp4")] == "2 worker(s) keep up"
    assert verdicts[("av", "webm")] == "starves at 2 workers; ~4 needed"


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0,-1"], "--workers: expected integers >= 0"),
    (["--decoders", "ffmpeg"], "--decoders must name some of"),
    (["--containers", "avi"], "--containers must name some of"),
    (["--short-side", "63"], "--short-side must be even"),
])
def test_bad_arguments_name_the_option(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench_data.parse_args(argv)
    assert message in capsys.readouterr().err


def test_help_describes_both_measurements():
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_data.py"), "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "clips/s of the training loader" in out and "--workers" in out
