"""Smoke test of the benchmark machinery (benchmarks/bench_tdm.py) on toy shapes.

It checks that a run completes, appends tidy rows and a run record to the CSV and JSON, and
that the pieces the numbers rest on (shapes, byte counts, quantiles, file appends) are right.
Speed is never asserted here.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))

from tdm_bench import results, shapes, sizes, targets, timing  # noqa: E402
from tdm_bench.sections import ops  # noqa: E402


@pytest.mark.parametrize("resolution, expected", [
    (224, {"layer2": (56, 28), "layer3": (28, 14), "layer4": (14, 7)}),
    (64, {"layer2": (16, 8), "layer3": (8, 4), "layer4": (4, 2)}),
])
def test_stage_sizes_follow_the_strided_convolutions(resolution, expected):
    assert shapes.stage_sizes(resolution) == expected


def test_stdm_shapes_at_224():
    by_site = {s.site: s for s in shapes.stdm_sites(shapes.Geometry(videos=2))}
    assert by_site["stdm.input"].shapes["x"] == (16, 15, 224, 224)
    assert by_site["stdm.fuse1"].shapes == {"x": (16, 64, 56, 56), "d": (16, 64, 28, 28)}
    assert by_site["stdm.fuse2"].shapes == {"x": (16, 256, 56, 56), "d": (16, 256, 28, 28)}


def test_geometry_rejects_a_resolution_too_small_for_layer4():
    with pytest.raises(ValueError, match="resolution"):
        shapes.Geometry(videos=1, resolution=32)


def test_traffic_counts_each_tensor_once():
    site = next(s for s in shapes.operator_sites(shapes.Geometry(videos=1), stages=("layer3",))
                if s.op == "bidirectional_excitation")
    x = 8 * 256 * 14 * 14 * 4                     # one (NT, planes, 14, 14) float32 tensor
    moved = ops.traffic(site, torch.float32)
    assert moved["forward"] == 4 * x              # read x, y_fwd, y_bwd; write out
    assert moved["backward"] == 7 * x             # read g, x, y_fwd, y_bwd; write 3 grads
    assert moved["forward+backward"] == 11 * x


def test_summarise_quantiles():
    t = timing.summarise([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (t.median_s, t.q20_s, t.q80_s, t.reps, t.min_s) == (3.0, 1.8, 4.2, 5, 1.0)


def test_round_robin_rotates_the_order():
    """Every implementation runs first (and in every other place) equally often, so that no
    one always follows the same neighbour, and every call reads a different input copy."""
    calls, indices = [], []
    steps = {name: (lambda i, name=name: (calls.append(name), indices.append(i)))
             for name in "abc"}
    budget = timing.Budget(warmup=0, min_reps=6, max_reps=6, min_time_s=0.0)
    timings, errors = timing.time_interleaved(steps, torch.device("cpu"), budget)
    assert not errors and set(timings) == set("abc")
    # Every call takes its own input copy index: none reads the copy the call before it read.
    assert sorted(indices) == list(range(18))
    rounds = [calls[i:i + 3] for i in range(0, len(calls), 3)]
    assert len(rounds) == 6 and all(sorted(r) == list("abc") for r in rounds)
    for place in range(3):
        assert sorted(r[place] for r in rounds) == sorted("abc" * 2)
    # ... and each follows each of the others equally often (a call after the compiled
    # contender was slower on the 2-core VM, whatever its place in the round).
    follows = [(calls[i - 1], calls[i]) for i in range(1, len(calls))]
    for x in "abc":
        before = [p for p, q in follows if q == x]
        assert abs(before.count(chr(ord("a") + (ord(x) - ord("a") + 1) % 3))
                   - before.count(chr(ord("a") + (ord(x) - ord("a") + 2) % 3))) <= 1


def test_inference_operators_are_timed_forward_only():
    site = next(s for s in shapes.operator_sites(shapes.Geometry(videos=1), stages=("layer3",))
                if s.op == "ltdm_mixture")
    assert ops.passes_of(site.op, ops.PASSES) == ("forward",)
    assert ops.passes_of("multiscale_sum", ops.PASSES) == ops.PASSES


def test_csv_append_keeps_old_rows_and_unions_columns(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("run_id,legacy\nold,1\n")
    res = results.Results({"run_id": "new"})
    res.add(section="ops", name="x", median_ms=1.5)
    results.append_csv(path, res.rows)
    rows = list(csv.DictReader(path.open()))
    assert [r["run_id"] for r in rows] == ["old", "new"]
    assert rows[0]["legacy"] == "1" and rows[1]["median_ms"] == "1.5"


def test_results_reject_unknown_columns():
    with pytest.raises(KeyError, match="bogus"):
        results.Results({}).add(bogus=1)


def test_tiny_run_writes_csv_json_and_plots(tmp_path):
    cmd = [sys.executable, str(BENCH / "bench_tdm.py"), "--size", "tiny", "--device", "cpu",
           "--sections", "ops", "--output-dir", str(tmp_path), "--no-progress",
           "--note", "smoke"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "operators, float32, forward+backward" in done.stdout

    rows = list(csv.DictReader((tmp_path / "bench_tdm.csv").open()))
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok and len(ok) == len(rows), [r["note"] for r in rows if r["status"] != "ok"]
    assert {r["name"] for r in ok} == set(ops.OP_ARGS)
    assert {r["pass"] for r in ok} == {"forward", "forward+backward"}
    assert all(float(r["median_ms"]) > 0 and float(r["gbps"]) > 0 for r in ok)
    assert all(r["speedup_vs_reference"] for r in ok)

    runs = json.loads((tmp_path / "bench_tdm.json").read_text())
    assert len(runs) == 1
    env = runs[0]["environment"]
    for key in ("device_name", "torch", "commit", "date", "copy_bandwidth_gbps", "note"):
        assert env[key] not in (None, ""), key
    assert len(runs[0]["rows"]) == len(rows)
    assert runs[0]["targets"], "target verdicts missing"
    assert (tmp_path / "ops_speedup_cpu.png").stat().st_size > 10_000
    verdicts = list(csv.DictReader((tmp_path / "bench_tdm_targets.csv").open()))
    assert len(verdicts) == len(runs[0]["targets"])
    assert {v["status"] for v in verdicts} <= {"PASS", "MISS", "NOT MEASURED"}


def test_tiny_modules_and_model_sections(tmp_path):
    """Modules and whole model on the real network at 64x64 with 2 segments: every variant runs,
    fused and reference share weights, and memory and FLOPs are recorded."""
    cmd = [sys.executable, str(BENCH / "bench_tdm.py"), "--size", "tiny", "--device", "cpu",
           "--sections", "modules,model", "--segments", "2", "--threads", "1",
           "--output-dir", str(tmp_path), "--no-progress", "--no-plots"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=420, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "bench_tdm.csv").open()))
    failed = [(r["name"], r["impl"], r["note"]) for r in rows if r["status"] != "ok"]
    assert not failed, failed
    modules = {(r["name"], r["impl"], r["pass"]) for r in rows if r["section"] == "modules"}
    for name in ("ltdm_shift", "tdn_bottleneck", "stdm_stem"):
        for impl in ("reference", "fused"):
            assert {(name, impl, "inference"), (name, impl, "training")} <= modules
    model = {(r["name"], r["impl"], r["pass"]): r for r in rows if r["section"] == "model"}
    assert len(model) == 6
    for (name, impl, pass_name), r in model.items():
        assert float(r["peak_mem_mb"]) > 0 and float(r["throughput"]) > 0
        # Fused TDN and TSN get the same preparation per pass (deployed for inference,
        # channels_last for CPU training); the reference runs as the authors wrote it.
        if impl == "reference":
            assert not r["note"], r["note"]
        else:
            assert ("pack_for_cpu_inference" if pass_name == "inference"
                    else "channels_last") in r["note"], (impl, pass_name, r["note"])
    tdn = float(model[("tdn_resnet50", "reference", "inference")]["gmacs"])
    tsn = float(model[("tsn_resnet50", "tsn", "inference")]["gmacs"])
    assert 1.05 < tdn / tsn < 1.15                  # docs/math.md §7: TDN costs 1.09x TSN's FLOPs
    runs = json.loads((tmp_path / "bench_tdm.json").read_text())
    statuses = {v["target"]: v["status"] for v in runs[0]["targets"]}
    assert len(statuses) == len(targets.MODEL_TARGETS)
    # Without --compile the targets naming a compiled model cannot be judged; all others can.
    for t in targets.MODEL_TARGETS:
        compiled = "compiled_" in t.numerator + t.denominator
        assert (statuses[t.target] == "NOT MEASURED") == compiled, t.target


def _model_row(impl, pass_name, median_ms, peak_mem_mb):
    return {"section": "model", "impl": impl, "pass": pass_name, "dtype": "float32",
            "status": "ok", "median_ms": median_ms, "peak_mem_mb": peak_mem_mb, "videos": 1}


def test_model_targets_compare_the_named_variants():
    """Each whole-model target is the ratio of the two variants it names, PASS or MISS by its
    threshold; a target whose variant did not run is NOT MEASURED and says how to run it."""
    rows = [_model_row("reference", "inference", 900.0, 100.0),
            _model_row("fused", "inference", 600.0, 90.0),
            _model_row("tsn", "inference", 500.0, 80.0),
            _model_row("compiled_reference", "inference", 620.0, 95.0),
            _model_row("reference", "training", 2600.0, 1000.0),
            _model_row("fused", "training", 2000.0, 650.0),
            _model_row("compiled_reference", "training", 2100.0, 700.0),
            _model_row("compiled_fused", "training", 1900.0, 600.0)]
    by_target = {v["target"]: v for v in targets.model_verdicts(rows, {"device": "cpu"})}
    assert len(by_target) == len(targets.MODEL_TARGETS)
    speed = by_target["TDN-ResNet50 inference speed-up vs reference >= 1.4"]
    assert (speed["status"], speed["measured"]) == ("PASS", 1.5)
    ratio = by_target["TDN/TSN inference time ratio, both eager <= 1.15"]
    assert (ratio["status"], ratio["measured"]) == ("MISS", 1.2)
    assert ratio["shortfall"] == pytest.approx(1.2 / 1.15 - 1, abs=1e-4)
    memory = by_target["training step peak memory vs reference <= 0.7"]
    assert (memory["status"], memory["measured"]) == ("PASS", 0.65)
    below = by_target["training step peak memory vs torch.compile(reference) <= 1 (below it)"]
    assert (below["status"], below["measured"]) == ("PASS", pytest.approx(650 / 700, abs=1e-4))
    compiled = by_target["training step: torch.compile(fused) vs torch.compile(reference) "
                         ">= 1.15"]
    assert compiled["status"] == "MISS" and compiled["measured"] == pytest.approx(2100 / 1900,
                                                                                  abs=1e-4)
    absent = by_target["TDN/TSN inference time ratio, both compiled <= 1.15"]
    assert absent["status"] == "NOT MEASURED"
    assert "compiled_fused, compiled_tsn" in absent["why"] and "--compile" in absent["why"]


def test_compile_flag_adds_the_compiled_models_only_where_asked():
    assert not sizes.get("quick").compile_models
    assert sizes.get("full").compile_models
    assert sizes.get("quick", compile_models=True).compile_models
    off = sizes.get("full", compile_reference=False)
    assert not (off.compile_models or off.compile_reference or off.compile_modules)


def test_busy_machine_hint_discounts_the_runs_own_threads():
    """A 2-thread run on 2 CPUs brings the load average near 2 by itself: that is not a busy
    machine; load beyond the run's threads is."""
    env = {"device": "cpu", "cpu_count": 2, "threads": 2, "load_average_start": 0.4,
           "load_average_end": 1.7}
    assert targets._machine_hints(env) == []
    env["load_average_end"] = 3.1
    assert "machine busy" in targets._machine_hints(env)[0]
