"""python -m tdn_ops.selftest: runs on the CPU in seconds, and fails when a backend is wrong."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import tdn_ops
import tdn_ops.reference
from op_cases import TOLERANCE as TEST_TOLERANCE
from tdn_ops import _samples, selftest

needs_native = pytest.mark.skipif(not tdn_ops.NATIVE_AVAILABLE,
                                  reason="tdn_ops._C is not built: no CPU kernels to test")


@needs_native
def test_module_runs_on_cpu_and_passes():
    proc = subprocess.run(
        [sys.executable, "-m", "tdn_ops.selftest", "--device", "cpu", "--cases", "3",
         "--backend", "cpu", "--dtype", "float32", "float64"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for op in tdn_ops.OPERATORS:
        rows = [line.split() for line in lines if line.startswith(op + " ")]
        assert [r[1:4] + r[-1:] for r in rows] == [["cpu", "float32", "3", "ok"],
                                                   ["cpu", "float64", "3", "ok"]], op
    assert "self-test passed" in lines[-1]


@needs_native
def test_exits_non_zero_when_a_kernel_is_wrong(monkeypatch, capsys):
    # A CPU kernel off by one part in a thousand in one output element: the self-test names the
    # operator and backend, and main() returns 1.
    real = tdn_ops.lateral_fuse

    def off_by_a_little(x, d, alpha, beta, *, backend="auto"):
        out = real(x, d, alpha, beta, backend=backend)
        if backend != "cpu":
            return out
        bump = torch.zeros_like(out)
        bump.view(-1)[0] = 1e-3 * (1 + out.detach().abs().max())
        return out + bump

    monkeypatch.setattr(tdn_ops, "lateral_fuse", off_by_a_little)
    status = selftest.main(["--cases", "2", "--backend", "cpu", "--dtype", "float32",
                            "--op", "lateral_fuse", "temporal_shift_conv"])
    out = capsys.readouterr().out
    assert status == 1, out
    assert "FAIL lateral_fuse cpu float32" in out
    assert [line.split()[-1] for line in out.splitlines()
            if line.startswith("temporal_shift_conv ")] == ["ok"]


@needs_native
def test_a_wrong_gradient_fails_too(monkeypatch):
    # The forward right, the backward of one argument wrong: caught by the backward check.
    real = tdn_ops.bidirectional_excitation

    class WrongGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.view_as(x)

        @staticmethod
        def backward(ctx, g):
            return 1.01 * g

    def wrong_backward(x, y_fwd, y_bwd, *, backend="auto"):
        return real(WrongGradient.apply(x), y_fwd, y_bwd, backend=backend)

    monkeypatch.setattr(tdn_ops, "bidirectional_excitation", wrong_backward)
    rows = selftest.run_selftest(torch.device("cpu"), [torch.float64], cases=2,
                                 ops=["bidirectional_excitation"], backends=["cpu"])
    assert [r.status for r in rows] == ["FAIL"]
    assert rows[0].forward <= 1.0 < rows[0].backward


@needs_native
def test_a_raising_backend_is_a_failure_not_a_crash(monkeypatch):
    def broken(*args, backend="auto"):
        raise RuntimeError("kernel launch failed")

    monkeypatch.setattr(tdn_ops, "multiscale_sum", broken)
    rows = selftest.run_selftest(torch.device("cpu"), [torch.float32], cases=1,
                                 ops=["multiscale_sum"], backends=["cpu"])
    assert rows[0].status == "FAIL" and "kernel launch failed" in rows[0].failures[0]


def test_unavailable_backends_are_skipped_with_the_reason(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    rows = selftest.run_selftest(torch.device("cpu"), [torch.float32], cases=1,
                                 ops=["lateral_fuse"], backends=["cuda", "triton"])
    assert [r.status for r in rows] == ["skipped", "skipped"]
    assert "cuda" in rows[0].skipped and "TRITON_INTERPRET" in rows[1].skipped


def test_nothing_to_compare_exits_2(capsys):
    assert selftest.main(["--backend", "cuda", "--cases", "1", "--op", "lateral_fuse"]) == 2
    assert "nothing compared" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--device", "tpu"], "--device must be cpu or cuda"),
    (["--device", "nonsense:x"], "--device"),
    (["--cases", "0"], "--cases"),
    (["--dtype", "int8"], "--dtype"),
])
def test_bad_arguments_give_one_line_naming_them(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        selftest.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cuda_without_a_gpu_is_one_line(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(SystemExit):
        selftest.main(["--device", "cuda"])
    assert "CUDA is not available" in capsys.readouterr().err


def test_every_operator_has_an_argument_sampler():
    # An operator added to tdn_ops.OPERATORS is self-tested and fuzzed once it has a sampler.
    missing = [op for op in tdn_ops.OPERATORS if op not in _samples.SAMPLERS]
    assert not missing, f"add samplers to tdn_ops._samples.SAMPLERS for {missing}"
    assert set(_samples.SAMPLERS) <= set(tdn_ops.OPERATORS)


def test_samples_are_valid_calls_of_the_reference():
    import random

    rng = random.Random(0)
    for op in tdn_ops.OPERATORS:
        for _ in range(8):
            s = _samples.sample(op, rng)
            built = _samples.build(s, torch.float64, "cpu", rng, views=tuple(_samples.VIEWS))
            # The public operator's checks accept it, and the reference runs on it.
            getattr(tdn_ops, op)(*built.args, backend="reference")


def test_tolerances_are_the_test_suites():
    assert set(selftest.TOLERANCE) == set(TEST_TOLERANCE)
    for dtype, tol in selftest.TOLERANCE.items():
        expected = TEST_TOLERANCE[dtype]
        assert (tol.norm, tol.atol, tol.rtol) == (expected.norm, expected.atol, expected.rtol)


def test_error_ratio():
    e = torch.tensor([1.0, -2.0, float("inf"), float("nan")], dtype=torch.float64)
    assert selftest.error_ratio(e.float(), e, torch.float32) == 0.0
    assert selftest.error_ratio(torch.tensor([1.0, -2.0, 0.0, float("nan")]), e,
                                torch.float32) == float("inf")
    assert selftest.error_ratio(torch.tensor([float("nan"), -2.0, float("inf"), 0.0]), e,
                                torch.float32) == float("inf")
    assert selftest.error_ratio(torch.tensor([1.01, -2.0, float("inf"), float("nan")]), e,
                                torch.float32) > 1.0
    assert selftest.error_ratio(torch.ones(3), torch.ones(4, dtype=torch.float64),
                                torch.float32) == float("inf")
