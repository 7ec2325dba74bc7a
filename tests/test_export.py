"""``tdn export`` and :mod:`tdn.deploy`: ONNX and torch.export files of small TDN models.

Every export traces a tdn_resnet18 with 2 segments on 64x64 frames, the smallest model that
has all of TDN's operators, so that the module stays within a few tens of seconds on CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import tdn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from tdn.deploy import (TOLERANCE, export_model, logits_of,  # noqa: E402
                        onnxruntime_session, run_onnx)
from tdn.deploy.onnx_ops import OPSET, translation_table  # noqa: E402

SEGMENTS, SIZE, CLASSES = 2, 64, 5


def _random_clips(n: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, SEGMENTS * 15, SIZE, SIZE, generator=generator)


def _relative(actual, expected) -> float:
    expected = np.asarray(expected)
    return float(np.abs(np.asarray(actual) - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    network = tdn.build_model("tdn_resnet18", num_classes=CLASSES, num_segments=SEGMENTS)
    # Non-trivial running statistics and classifier, so that wrong wiring shows in the logits.
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        network.new_fc.weight.normal_(0, 0.1)
    return network.eval()


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "tdn18.safetensors"
    tdn.save_checkpoint(model, path, input_size=SIZE)
    return path


@pytest.fixture(scope="module")
def onnx_file(checkpoint, tmp_path_factory):
    """The checkpoint exported through the command, batch dynamic, traced at N=1."""
    from tdn.commands.export import main

    path = tmp_path_factory.mktemp("onnx") / "tdn18.onnx"
    assert main(["--checkpoint", str(checkpoint), "--format", "onnx",
                 "--output", str(path)]) == 0
    return path


# ------------------------------------------------------------------------------------ ONNX
class AllOperators(torch.nn.Module):
    """Every fused operator once, on (N*T, C, H, W) features, as the TDN blocks call them."""

    def __init__(self, channels: int = 8, segments: int = 3) -> None:
        super().__init__()
        self.segments = segments
        generator = torch.Generator().manual_seed(3)
        self.shift = torch.nn.Parameter(torch.randn(channels, 1, 3, generator=generator))

    def forward(self, snippets, features):
        import tdn_ops

        t = self.segments
        motion = tdn_ops.temporal_diff_pool(snippets, 5, 2)
        aligned = features.flip(-1) * 0.5
        diff, pooled = tdn_ops.cross_segment_diff(features, aligned, t)
        mixed = tdn_ops.multiscale_sum(diff, pooled.flip(-2), diff * 0.25)
        y_fwd, y_bwd = mixed[0], mixed[1]
        excited = tdn_ops.bidirectional_excitation(features, y_fwd, y_bwd)
        shifted = tdn_ops.temporal_shift_conv(excited, self.shift, t)
        fused = tdn_ops.excite_shift(features, y_fwd, y_bwd, self.shift, t)
        lateral = tdn_ops.lateral_fuse(features, features[..., ::2, ::2].contiguous(), 0.75,
                                       0.25)
        return motion, diff, pooled, mixed, excited, shifted, fused, lateral


def test_operator_translations_match_the_operators(tmp_path):
    """The ONNX subgraphs of the fused operators compute what the operators compute, for a
    batch size other than the traced one, with standard ONNX operators only."""
    module = AllOperators().eval()
    t = module.segments

    def inputs(videos: int):
        generator = torch.Generator().manual_seed(videos)
        return (torch.randn(videos * t, 15, 12, 10, generator=generator),
                torch.randn(videos * t, 8, 6, 6, generator=generator))

    batch = torch.export.Dim("videos", min=1)
    program = torch.export.export(
        module, inputs(2), dynamic_shapes=({0: 3 * batch}, {0: 3 * batch}))
    path = tmp_path / "ops.onnx"
    torch.onnx.export(program, (), str(path), dynamo=True, opset_version=OPSET,
                      custom_translation_table=translation_table(), verbose=False)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    assert {node.domain for node in graph.graph.node} <= {"", "ai.onnx"}
    assert not any("tdn" in node.op_type for node in graph.graph.node)

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    snippets, features = inputs(3)  # traced with 2 videos, run with 3
    feeds = dict(zip([i.name for i in session.get_inputs()], (snippets.numpy(),
                                                              features.numpy())))
    with torch.no_grad():
        expected = module(snippets, features)
    for name, got, want in zip(("temporal_diff_pool", "cross_segment_diff (diff)",
                                "cross_segment_diff (pooled)", "multiscale_sum",
                                "bidirectional_excitation", "temporal_shift_conv",
                                "excite_shift", "lateral_fuse"),
                               session.run(None, feeds), expected):
        assert got.shape == tuple(want.shape), name
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)


def test_project_excite_shift_translation_matches_its_formula():
    """The translation of the L-TDM tail operator, run eagerly by onnxscript (onnxruntime
    underneath), against its definition written with torch ops."""
    import tdn_ops
    from tdn.deploy.onnx_ops import project_excite_shift

    rng = np.random.default_rng(0)
    t, nt, channels, mid, h, w = 2, 4, 16, 4, 5, 6

    def array(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    x, mixed, weight = array(nt, channels, h, w), array(2, nt, mid, h, w), array(channels, mid)
    scale, bias, shift = array(2, channels), array(2, channels), array(channels, 1, 3)
    got = project_excite_shift(x, mixed, weight, scale, bias, shift, t)
    as_torch = [torch.from_numpy(a) for a in (x, mixed, weight, scale, bias, shift)]
    tx, tmixed, tweight, tscale, tbias, tshift = as_torch
    y = (torch.einsum("kc,dnchw->dnkhw", tweight, tmixed) * tscale[:, None, :, None, None]
         + tbias[:, None, :, None, None])
    want = tdn_ops.reference.excite_shift(tx, y[0], y[1], tshift, t)
    np.testing.assert_allclose(getattr(got, "value", got), want.numpy(), rtol=1e-5, atol=1e-5)


def test_onnx_export_verifies_and_takes_any_batch(onnx_file, model, capfd):
    graph = onnx.load(str(onnx_file))
    onnx.checker.check_model(graph, full_check=True)
    assert graph.opset_import[0].version == OPSET
    batch_dim, *dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic: any N
    # T and the frame size come from the checkpoint's metadata
    assert [d.dim_value for d in dims] == [SEGMENTS * 15, SIZE, SIZE]
    clips = _random_clips(3)  # traced at N=1, run at N=3
    with torch.no_grad():
        expected = model(clips).numpy()
    assert _relative(run_onnx(onnxruntime_session(onnx_file), clips), expected) < TOLERANCE


def test_onnx_file_runs_without_tdn(onnx_file, model):
    """The file needs onnxruntime only: run it where importing tdn or tdn_ops fails."""
    clips = _random_clips(2, seed=5)
    np.save(onnx_file.with_suffix(".npy"), clips.numpy())
    script = (
        "import sys; sys.modules['tdn'] = sys.modules['tdn_ops'] = None\n"
        "import numpy as np, onnxruntime as ort\n"
        f"s = ort.InferenceSession({str(onnx_file)!r}, providers=['CPUExecutionProvider'])\n"
        f"x = np.load({str(onnx_file.with_suffix('.npy'))!r})\n"
        "np.save(sys.argv[1], s.run(None, {s.get_inputs()[0].name: x})[0])\n")
    out = onnx_file.with_name("logits.npy")
    subprocess.run([sys.executable, "-c", script, str(out)], check=True, timeout=120)
    with torch.no_grad():
        expected = model(clips).numpy()
    assert _relative(np.load(out), expected) < TOLERANCE


def test_onnx_session_for_a_model_in_memory(model):
    from tdn.deploy import onnx_session_for_model

    session = onnx_session_for_model(model, SIZE, batch=2, threads=1)
    clips = _random_clips(2, seed=7)
    with torch.no_grad():
        expected = model(clips).numpy()
    assert _relative(run_onnx(session, clips), expected) < TOLERANCE


# ------------------------------------------------------------------------------ torch.export
def test_pt2_export_keeps_fused_operators_and_takes_any_batch(model, tmp_path):
    path = tmp_path / "tdn18.pt2"
    report = export_model(model, "pt2", path, input_size=SIZE, batch=1, graph="fused")
    assert report.graph == "fused" and report.agreement.ok
    program = torch.export.load(str(path))
    targets = {str(node.target) for node in program.graph.nodes}
    assert any(t.startswith("tdn_ops.") for t in targets)
    dynamic = export_model(model, "pt2", tmp_path / "dynamic.pt2", input_size=SIZE)
    assert dynamic.batch == "dynamic"
    clips = _random_clips(3)
    with torch.no_grad():
        expected = model(clips).numpy()
    assert _relative(logits_of(dynamic.path, "pt2", clips), expected) < TOLERANCE


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TDN_TEST_AOTI") != "1",
                    reason="AOTInductor compiles C++ for minutes on a 2-core machine; "
                           "set TDN_TEST_AOTI=1 to run it")
def test_aoti_package(model, tmp_path):
    report = export_model(model, "aoti", tmp_path / "tdn18_aoti.pt2", input_size=SIZE, batch=1)
    assert report.agreement.ok


# ------------------------------------------------------------------------------ bad input
def _one_error_line(capfd) -> str:
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_unknown_format_is_one_line(checkpoint, tmp_path, capfd):
    from tdn.commands.export import main

    assert main(["--checkpoint", str(checkpoint), "--format", "tflite",
                 "--output", str(tmp_path / "x")]) == 2
    line = _one_error_line(capfd)
    assert "format" in line and "onnx, pt2, aoti" in line and "tflite" in line
    assert not (tmp_path / "x").exists()


def test_segments_that_do_not_match_the_checkpoint_are_one_line(checkpoint, tmp_path, capfd):
    from tdn.commands.export import main

    assert main(["--checkpoint", str(checkpoint), "--format", "onnx", "--segments",
                 "3", "--output", str(tmp_path / "x.onnx")]) == 2
    line = _one_error_line(capfd)
    assert "segments=3" in line and "num_segments=2" in line


@pytest.mark.parametrize("kwargs, words", [
    ({"batch": 0}, "batch"), ({"batch": "many"}, "batch"), ({"graph": "fast"}, "graph"),
    ({"input_size": 0}, "input_size")])
def test_bad_arguments_name_the_argument(model, tmp_path, kwargs, words):
    with pytest.raises(ValueError, match=words):
        export_model(model, "onnx", tmp_path / "x.onnx", **kwargs)
    assert not (tmp_path / "x.onnx").exists()


def test_frames_too_small_for_the_model(model, tmp_path):
    with pytest.raises(ValueError, match="too small"):
        export_model(model, "pt2", tmp_path / "x.pt2", input_size=16)
