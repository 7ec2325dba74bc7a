"""The Triton backend's own machinery (tdn_ops/triton): what no other backend has.

Values and gradients of the Triton kernels are checked with every other backend's, in
test_ops_values.py (targets ``triton-interpret`` and ``triton-cuda``). Here: the int64 index
path and when it is taken, the host emulation of the nearest-index map, the ``triton_op``
bodies on fake tensors (what torch.compile runs to learn output shapes) and compiled mode
(cubin for sm_90, no GPU needed), which the interpreter cannot check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import tdn_ops.triton as tdn_triton
from op_cases import cases_for, make_args
from op_targets import TRITON_CUDA, TRITON_INTERPRET, check_against_reference, target_params

if not tdn_triton.AVAILABLE:
    pytest.skip(f"tdn_ops.triton is unavailable: {tdn_triton.IMPORT_ERROR}",
                allow_module_level=True)

from tdn_ops.triton import _common  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("target", target_params((TRITON_INTERPRET, TRITON_CUDA)))
def test_int64_indexing_path(target, monkeypatch):
    """Every kernel's int64 index path (taken past 2**30 elements), forced on small shapes."""
    monkeypatch.setattr(_common, "_INT32_SAFE_REACH", 0)
    for op in tdn_triton.OPERATORS:
        case = cases_for(op)[1]
        check_against_reference(target, op, make_args(case, torch.float32, device=target.device,
                                                      layout="channels_last"), torch.float32)


def test_int64_decision():
    small = torch.empty(4, 4)
    assert not _common.needs_int64(small)
    assert _common.needs_int64(torch.empty(1).expand(2**31))  # numel alone, no memory behind
    far = torch.empty_strided((2, 1), (2**31, 1), device="meta")  # reach, not numel
    assert far.numel() == 2 and _common.needs_int64(far)


def test_nearest_index_map_matches_interpolate():
    """The host emulation of the kernels' nearest-source index equals F.interpolate's."""
    from tdn_ops.triton._upsample import _axis_plan, _nearest_src

    for in_size in range(1, 30):
        for out_size in range(1, 70):
            src = torch.arange(in_size, dtype=torch.float32).view(1, 1, 1, -1)
            expected = torch.nn.functional.interpolate(src, size=(1, out_size), mode="nearest")
            plan = _axis_plan(in_size, out_size)
            got = [_nearest_src(d, in_size, out_size, plan.scale) for d in range(out_size)]
            assert got == expected.flatten().long().tolist(), (in_size, out_size)



def _run_python(code: str, env_updates: dict[str, str | None]) -> str:
    env = dict(os.environ)
    for key, value in env_updates.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout



def test_custom_ops_trace_with_fake_tensors():
    """The triton_op bodies (the launchers) run on fake tensors, as torch.compile runs them to
    learn output shapes: no data access, outputs with the right shapes and layouts. Checked
    here on the meta device (a CPU-only torch cannot even make views of fake CUDA tensors)."""
    out = _run_python("""
        import torch
        import tdn_ops.triton as tt
        from tdn_ops.triton import _wiring
        from torch._subclasses.fake_tensor import FakeTensorMode
        assert _wiring.REGISTRATION_ERROR is None, _wiring.REGISTRATION_ERROR
        ops = torch.ops.tdn_ops_triton
        cl = torch.channels_last
        with FakeTensorMode():
            x = torch.empty(16, 64, 7, 9, device="meta", memory_format=cl)
            w = torch.empty(64, 1, 3, device="meta")
            small = torch.empty(16, 64, 3, 4, device="meta", memory_format=cl)
            diff_pooled = ops.cross_segment_diff(x, x, 8)
            results = {
                "temporal_diff_pool": ops.temporal_diff_pool(x, 4, 2),
                "temporal_diff_pool_backward": ops.temporal_diff_pool_backward(
                    ops.temporal_diff_pool(x, 4, 2), 4, 2, 7, 9),
                "cross_segment_diff": diff_pooled,
                "cross_segment_diff_backward": ops.cross_segment_diff_backward(*diff_pooled, 8),
                "multiscale_sum": ops.multiscale_sum(x, small, x),
                "multiscale_sum_backward": ops.multiscale_sum_backward(x, 3, 4),
                "bidirectional_excitation": ops.bidirectional_excitation(x, x, x),
                "bidirectional_excitation_backward":
                    ops.bidirectional_excitation_backward(x, x, x, x),
                "temporal_shift_conv": ops.temporal_shift_conv(x, w, 8),
                "temporal_shift_conv_backward": ops.temporal_shift_conv_backward(x, x, w, 8),
                "excite_shift": ops.excite_shift(x, x, x, w, 8),
                "excite_shift_backward": ops.excite_shift_backward(x, x, x, x, w, 8),
                "lateral_fuse": ops.lateral_fuse(x, small, 0.5, 0.5),
                "lateral_fuse_backward": ops.lateral_fuse_backward(x, 3, 4, 0.5, 0.5),
            }
            for name, outs in results.items():
                for t in outs if isinstance(outs, tuple) else (outs,):
                    assert t.device.type == "meta", name
                    if t.dim() == 5:  # two channels_last halves
                        _, b, c, h, w_ = t.shape
                        assert t.stride() == (b * h * w_ * c, h * w_ * c, 1, w_ * c, c), name
                    elif t.dim() == 4:
                        assert t.is_contiguous(memory_format=cl), (name, t.stride())
                    else:  # the weight gradient
                        assert t.shape == w.shape and t.is_contiguous(), name
        print("traced", len(results))
    """, {"TRITON_INTERPRET": None})
    assert "traced 14" in out


def test_kernels_compile_for_sm90():
    """Compiled mode (not the interpreter) accepts every kernel: Triton compiles them to
    cubin for sm_90 without a GPU. Catches what the interpreter lets through."""
    out = _run_python("""
        from tdn_ops.triton._compile_check import compile_all
        print("compiled", compile_all(90))
    """, {"TRITON_INTERPRET": None})
    assert "compiled 24" in out
