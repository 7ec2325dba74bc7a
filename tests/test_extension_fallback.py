"""A checkout without the compiled extension still works, on the reference backend."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_without_extension_warns_once_and_uses_reference():
    script = textwrap.dedent("""
        import sys, warnings
        sys.modules["tdn_ops._C"] = None          # makes `from . import _C` raise ImportError
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import tdn_ops
            import tdn_ops.ops.excite_shift       # importing more modules warns no more
        import torch
        msgs = [str(w.message) for w in caught if "tdn_ops._C" in str(w.message)]
        assert len(msgs) == 1, msgs
        assert "reference" in msgs[0]
        assert not tdn_ops.NATIVE_AVAILABLE
        assert tdn_ops.available_backends("cpu") == ["reference"]
        x = torch.randn(8, 16, 5, 5, requires_grad=True)
        w = torch.randn(16, 1, 3)
        y = tdn_ops.excite_shift(x, x, x, w, 4)
        y.sum().backward()
        torch.testing.assert_close(y, tdn_ops.reference.excite_shift(x, x, x, w, 4))
        try:
            tdn_ops.excite_shift(x, x, x, w, 4, backend="cpu")
        except RuntimeError as e:
            assert "not available" in str(e)
        else:
            raise AssertionError("backend='cpu' should fail without the extension")
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
