"""tdn.flops and the flops / CLI commands: the paper's numbers (docs/math.md §7) and fused
counting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tdn
from tdn.cli import COMMANDS, main as cli_main
from tdn.flops import AUTHORS_UNUSED_PARAMS, count_macs, measure

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("arch,segments,gmacs,digits", [
    ("tdn_resnet50", 8, 35.65, 2),
    ("tdn_resnet50", 16, 71.30, 2),
    ("tdn_resnet101", 8, 65.9, 1),   # the paper: "about 65.9 / 131.7"
    ("tdn_resnet101", 16, 131.7, 1),
])
def test_macs_reproduce_the_authors(arch, segments, gmacs, digits):
    assert round(measure(arch, segments).macs.gmacs, digits) == gmacs


def test_tsn_baseline_and_ratio():
    tdn_cost, tsn_cost = measure("tdn_resnet50", 8), measure("tsn_resnet50", 8)
    assert round(tsn_cost.macs_per_segment / 1e9, 2) == 4.09
    assert round(tdn_cost.macs.total / tsn_cost.macs.total, 2) == 1.09


@pytest.mark.parametrize("arch,millions", [("tdn_resnet50", 24.42), ("tdn_resnet101", 43.68)])
def test_parameters_match_the_authors_counting_conv1_temp(arch, millions):
    cost = measure(arch, 8)
    assert cost.authors_params == cost.params + AUTHORS_UNUSED_PARAMS
    assert round(cost.authors_params / 1e6, 2) == millions


def test_macs_scale_with_batch_and_ignore_the_training_flag():
    with torch.device("meta"):
        model = tdn.build_model("tdn_resnet18", num_segments=2).train()
        one, three = torch.empty(1, 30, 64, 64), torch.empty(3, 30, 64, 64)
    assert count_macs(model, three).total == 3 * count_macs(model, one).total
    assert model.training


@pytest.mark.parametrize("arch", ["tdn_resnet18"])  # same fused ops as ResNet-50, 4x cheaper
def test_fused_model_counts_like_the_reference_model(arch):
    clip = torch.randn(1, 30, 64, 64)
    fused = tdn.build_model(arch, num_segments=2)
    ref = tdn.build_model(arch, num_segments=2, backend="reference")
    a, b = count_macs(fused, clip), count_macs(ref, clip)
    assert a.total == b.total and a.by_category == b.by_category
    assert a.by_category["upsample"] > 0


def test_flops_cli_prints_macs_params_and_ratio(capsys):
    assert cli_main(["flops", "--arch", "tdn_resnet50", "--segments", "8", "--size", "224"]) == 0
    out = capsys.readouterr().out
    for text in ("35.65 G", "24.41 M", "24.42 M in the authors'", "conv1_temp (9,472)",
                 "4.09 G per frame", "1.09x"):
        assert text in out


def test_flops_cli_json(capsys):
    assert cli_main(["flops", "--arch", "tdn_resnet101", "--segments", "16", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["arch"] == "tdn_resnet101" and round(result["gmacs"], 1) == 131.7
    assert result["baseline"] == "tsn_resnet101"


def test_cli_rejects_a_bad_argument(capsys):
    with pytest.raises(SystemExit):
        cli_main(["flops", "--segments", "0"])
    assert "positive integer" in capsys.readouterr().err


def test_unknown_arch_is_an_error_message_not_a_traceback(capsys):
    assert cli_main(["flops", "--arch", "tdn_vgg16"]) == 2
    assert "unknown model 'tdn_vgg16'" in capsys.readouterr().err


def test_every_command_builds_its_parser_without_torch():
    code = ("import sys; from tdn.cli import COMMANDS, build_parser; "
            "[build_parser(only=c) for c in COMMANDS]; build_parser(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "False"


def test_python_m_tdn_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "tdn", "--help"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    for name in COMMANDS:
        assert name in out
