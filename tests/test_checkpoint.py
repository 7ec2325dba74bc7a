"""Checkpoint files (tdn.checkpoint_io), loading them into models (tdn.models.factory) and
ImageNet initialisation (tdn.models.imagenet): the authors' formats, ours, conversion."""

from __future__ import annotations

import os

import pytest
import torch

import tdn
from tdn.checkpoint_io import CheckpointError, read_state_dict, save_checkpoint
from tdn.cli import main as cli_main
from tdn.models.factory import load_checkpoint, load_model
from tdn.models.imagenet import load_imagenet_weights

from _model_fixtures import official_state_dict

PREFIXES = ["module.base_model.", "base_model.", ""]


def _r50(**kwargs):
    return tdn.build_model("tdn_resnet50", **kwargs)


@pytest.fixture(scope="module")
def r50_official():
    return official_state_dict(50)


@pytest.mark.parametrize("prefix", PREFIXES, ids=["module", "base_model", "stripped"])
@pytest.mark.parametrize("wrapped", [True, False], ids=["state_dict-key", "bare"])
def test_authors_r50_checkpoint_loads_in_every_form(prefix, wrapped):
    state = official_state_dict(50, prefix=prefix)
    model = _r50()
    report = load_checkpoint(model, {"state_dict": state, "epoch": 5} if wrapped else state)
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert sorted(report.ignored) == ["base_model.conv1_temp.bias", "base_model.conv1_temp.weight"]
    loaded = model.state_dict()
    assert torch.equal(loaded["base_model.layer3_bak.2.mse.conv3_smallscale4.weight"],
                       state[prefix + "layer3_bak.2.mse.conv3_smallscale4.weight"])
    fc_key = ("module." if prefix.startswith("module.") else "") + "new_fc.weight"
    assert torch.equal(loaded["new_fc.weight"], state[fc_key])


@pytest.mark.filterwarnings("ignore:.*to a meta parameter")
def test_authors_r101_checkpoint_loads_without_missing_or_unexpected_keys():
    with torch.device("meta"):  # the key/shape check is what matters; skip 43M inits
        model = tdn.build_model("tdn_resnet101")
    report = load_checkpoint(model, official_state_dict(101))
    assert report.ok and len(report.loaded) == len(model.state_dict())


def test_authors_file_loads_with_weights_only(tmp_path, r50_official):
    path = tmp_path / "tdn_r50.pth.tar"
    torch.save({"epoch": 60, "arch": "resnet50", "best_prec1": 52.3,
                "state_dict": r50_official}, path)
    model = _r50()
    assert load_checkpoint(model, path).ok


def test_class_count_mismatch_explains_backbone_only():
    model = _r50()
    before = model.new_fc.weight.detach().clone()
    state = official_state_dict(50, num_classes=400)
    with pytest.raises(CheckpointError, match=r"(?s)400 classes.*174.*backbone_only=True"):
        load_checkpoint(model, state)
    assert torch.equal(model.new_fc.weight, before)  # nothing was loaded
    report = load_checkpoint(model, state, backbone_only=True)
    assert report.ok and torch.equal(model.new_fc.weight, before)
    assert torch.equal(model.base_model.conv1.weight, state["module.base_model.conv1.weight"])


def test_other_depth_is_named_in_the_error():
    with torch.device("meta"):
        model = _r50()
    expected = r"(?s)unexpected in the checkpoint \(799\).*holds a tdn_resnet101"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(model, official_state_dict(101))


def test_non_strict_load_reports_and_loads_what_fits(r50_official):
    model = _r50()
    state = dict(r50_official)
    del state["module.base_model.layer4_bak.2.shift.conv.weight"]
    report = load_checkpoint(model, state, strict=False)
    assert report.missing == ["base_model.layer4_bak.2.shift.conv.weight"]
    assert "missing from the checkpoint (1)" in str(report)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_project_checkpoint_round_trip(tmp_path, suffix):
    torch.manual_seed(0)
    model = tdn.build_model("tdn_resnet18", num_classes=11, num_segments=16)
    path = tmp_path / f"model{suffix}"
    save_checkpoint(model, path, epoch=3)
    assert os.listdir(tmp_path) == [path.name]  # written atomically, no temp file left
    _, metadata = read_state_dict(path)
    assert metadata["arch"] == "tdn_resnet18" and metadata["num_classes"] == "11"
    assert metadata["num_segments"] == "16" and metadata["epoch"] == "3"
    rebuilt = load_model(path)
    assert (rebuilt.arch, rebuilt.num_classes, rebuilt.num_segments) == ("tdn_resnet18", 11, 16)
    assert (rebuilt.alpha, rebuilt.beta) == (0.75, 0.25)
    for (name, a), b in zip(model.state_dict().items(), rebuilt.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_project_checkpoint_refuses_another_arch(tmp_path):
    path = tmp_path / "tsn.safetensors"
    save_checkpoint(tdn.build_model("tsn_resnet18"), path)
    with pytest.raises(CheckpointError, match="holds a tsn_resnet18"):
        load_checkpoint(tdn.build_model("tdn_resnet18"), path)


def test_convert_cli_writes_a_loadable_project_checkpoint(tmp_path, r50_official, capsys):
    src, dst = tmp_path / "authors.pth.tar", tmp_path / "ours.safetensors"
    torch.save({"state_dict": r50_official}, src)
    assert cli_main(["convert", str(src), str(dst), "--segments", "16"]) == 0
    assert "tdn_resnet50, 174 classes, 16 segments" in capsys.readouterr().out
    state, metadata = read_state_dict(dst)
    assert not any("conv1_temp" in k for k in state)
    assert metadata["alpha"] == "0.75"
    model = load_model(dst)
    assert model.num_segments == 16
    assert torch.equal(model.base_model.layer1_bak[0].conv1.bias,
                       r50_official["module.base_model.layer1_bak.0.conv1.bias"])


def test_convert_refuses_a_broken_checkpoint(tmp_path, r50_official, capsys):
    src, dst = tmp_path / "authors.pth", tmp_path / "ours.safetensors"
    state = dict(r50_official)
    state["module.base_model.layer2_bak.0.mse.conv1.weight"] = torch.zeros(3, 3)
    torch.save(state, src)
    assert cli_main(["convert", str(src), str(dst)]) == 2
    assert "shape mismatches (1)" in capsys.readouterr().err
    assert not dst.exists()


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "hook": ValueError("not a tensor")}, path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        read_state_dict(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(_r50(), tmp_path / "nope.pth")


# ------------------------------------------------------------------------------ ImageNet
def _imagenet_state(depth: int, fbresnet: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """ImageNet ResNet weights under torchvision names (fbresnet: conv biases, last_linear)."""
    with torch.device("meta"):
        tsn = tdn.build_model(f"tsn_resnet{depth}")
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in tsn.base_model.state_dict().items():
        state[key] = (torch.tensor(3) if key.endswith("num_batches_tracked")
                      else torch.rand(value.shape, generator=gen) + 0.1)
        if fbresnet and key.endswith("weight") and value.dim() == 4:
            state[key[:-len("weight")] + "bias"] = torch.randn(value.shape[0], generator=gen)
    classifier = "last_linear" if fbresnet else "fc"
    state[f"{classifier}.weight"] = torch.randn(1000, tsn.feature_dim, generator=gen)
    state[f"{classifier}.bias"] = torch.randn(1000, generator=gen)
    return state


@pytest.mark.parametrize("fbresnet", [False, True], ids=["torchvision", "fbresnet"])
def test_imagenet_init_of_tdn(tmp_path, fbresnet):
    source = _imagenet_state(50, fbresnet)
    path = tmp_path / "resnet50.pth"
    torch.save(source, path)
    model = tdn.build_model("tdn_resnet50", pretrained=path)
    base = model.base_model
    report = str(model.pretrained_report)
    assert torch.equal(base.conv1.weight, source["conv1.weight"])
    assert torch.equal(base.layer3_bak[4].conv2.weight, source["layer3.4.conv2.weight"])
    assert torch.equal(base.resnext_layer1[2].bn3.running_var, source["layer1.2.bn3.running_var"])
    inflated = source["conv1.weight"].mean(dim=1, keepdim=True).repeat(1, 12, 1, 1)
    torch.testing.assert_close(base.conv1_5[0].weight, inflated, rtol=0, atol=0)
    if fbresnet:
        assert torch.equal(base.layer2_bak[0].downsample[0].bias,
                           source["layer2.0.downsample.0.bias"])
        assert "zero biases" not in report
    else:
        assert torch.count_nonzero(base.layer2_bak[0].downsample[0].bias) == 0
        biased = sum(isinstance(m, torch.nn.Conv2d) and m.bias is not None
                     for m in model.modules())
        assert biased == 63 and f"zero biases for {biased} convolutions" in report
    assert "inflated conv1 -> base_model.conv1_5.0.weight" in report
    assert "L-TDM (mse)" in report and "temporal shift" in report
    assert "unused source tensors (2)" in report


def test_imagenet_init_of_tsn():
    source = _imagenet_state(18, fbresnet=False)
    model = tdn.build_model("tsn_resnet18")
    load_imagenet_weights(model, source)
    assert torch.equal(model.base_model.layer4[1].conv2.weight, source["layer4.1.conv2.weight"])


def test_imagenet_weights_of_another_depth_are_refused():
    model = tdn.build_model("tdn_resnet18")
    before = model.base_model.conv1.weight.detach().clone()
    with pytest.raises(CheckpointError, match="another depth"):
        load_imagenet_weights(model, _imagenet_state(34, fbresnet=False))
    assert torch.equal(model.base_model.conv1.weight, before)


def test_pretrained_path_with_a_tdn_checkpoint_loads_the_whole_model(tmp_path):
    model = tdn.build_model("tdn_resnet18", num_classes=5)
    path = tmp_path / "tdn18.safetensors"
    save_checkpoint(model, path)
    again = tdn.build_model("tdn_resnet18", num_classes=5, pretrained=path)
    assert again.pretrained_report.ok
    assert torch.equal(again.new_fc.weight, model.new_fc.weight)


def test_wrapped_models_save_and_load_plain_keys(tmp_path):
    model = tdn.build_model("tsn_resnet18", num_classes=3)
    compiled = torch.compile(model)  # not run: only its state-dict prefix matters here
    path = tmp_path / "compiled.safetensors"
    save_checkpoint(compiled, path)
    state, metadata = read_state_dict(path)
    assert "new_fc.weight" in state and metadata["arch"] == "tsn_resnet18"
    assert load_checkpoint(torch.compile(tdn.build_model("tsn_resnet18", num_classes=3)),
                           compiled.state_dict()).ok


def test_malformed_segment_metadata_names_the_field_and_the_file():
    from tdn.models.factory import _check_metadata

    model = tdn.build_model("tdn_resnet18", num_classes=3, num_segments=2)
    with pytest.raises(CheckpointError, match=r"run\.safetensors.*'num_segments'.*'eight'"):
        _check_metadata(model, {"num_segments": "eight"}, "run.safetensors")
