"""pytest configuration for the benchmark suite (``pytest benchmarks/``), which the default
``pytest`` run (``testpaths = ["tests"]``) never collects."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
try:  # an installed tdn_ops, else the source checkout
    import tdn_ops  # noqa: F401
except ImportError:
    sys.path.insert(0, str(HERE.parent))


def pytest_addoption(parser):
    group = parser.getgroup("tdn benchmarks")
    group.addoption("--tdn-device", default="cpu", help="device to benchmark on (cpu, cuda)")
    group.addoption("--tdn-videos", type=int, default=None,
                    help="videos per batch (default: 1 on a CPU, 8 on a GPU)")
    group.addoption("--tdn-dtype", default="float32", help="float32, bfloat16 or float16")
