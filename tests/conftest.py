"""Test-session setup shared by every module.

Triton decides when a kernel (its own standard library's too) is decorated whether it is
compiled or interpreted. Without a GPU the Triton tests run under the interpreter, so Triton and
tdn_ops.triton must be imported first with ``TRITON_INTERPRET=1``, before any other module
(torch.compile, the GPU tests, ...) imports Triton in compiled mode. The variable is removed again:
it makes backend="triton" available on CPU tensors, which only the tests of the
``triton-interpret`` target want (the fixture below sets it for them, per test).
"""

import os

import pytest
import torch

if not torch.cuda.is_available() and "TRITON_INTERPRET" not in os.environ:
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton  # noqa: F401

        import tdn_ops.triton  # noqa: F401
    except ImportError:
        pass
    finally:
        del os.environ["TRITON_INTERPRET"]


@pytest.fixture(autouse=True)
def _activate_operator_target(request, monkeypatch):
    """Operator tests parametrised over ``target`` (tests/op_targets.py) skip, with the reason,
    a target this machine cannot run, and run interpreted Triton targets under
    ``TRITON_INTERPRET=1``."""
    callspec = getattr(request.node, "callspec", None)
    target = callspec.params.get("target") if callspec is not None else None
    if target is not None:
        from op_targets import activate

        op = callspec.params.get("op")
        activate(target, monkeypatch, op if isinstance(op, str) else None)
