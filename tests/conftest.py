"""Test-session setup shared by every module.

Triton decides when a kernel (its own standard library's too) is decorated whether it is
compiled or interpreted. Without a GPU the Triton tests run under the interpreter, so Triton and
tdn_ops.triton must be imported first with ``TRITON_INTERPRET=1``, before any other module
(torch.compile, test_gpu, ...) imports Triton in compiled mode. The variable is removed again:
it makes backend="triton" available on CPU tensors, which only tests/test_triton.py wants (it
sets the variable per test).
"""

import os

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
