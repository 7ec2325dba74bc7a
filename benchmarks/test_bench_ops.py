"""pytest-benchmark suite for the fused operators (not part of the correctness tests).

    pytest benchmarks/test_bench_ops.py --benchmark-only                 # CPU, 1 video
    pytest benchmarks/test_bench_ops.py --benchmark-only --tdn-device cuda --tdn-dtype bfloat16
    pytest benchmarks/test_bench_ops.py --benchmark-only -k "excite_shift and fused"

Each case times one operator at one site of TDN-ResNet50 (the S-TDM shapes and layer 3, where
the CPU targets are set), for one implementation and pass, with inputs rotated through a
footprint larger than the cache. ``benchmarks/bench_tdm.py`` is the full report; this suite is
for comparing commits with pytest-benchmark's own tools (``--benchmark-autosave``,
``--benchmark-compare``). It asserts nothing about speed.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import tdn_ops

from tdm_bench import implementations
from tdm_bench.sections.common import DTYPES
from tdm_bench.sections.ops import OperatorBench, passes_of
from tdm_bench.shapes import Geometry, operator_sites
from tdm_bench.timing import synchronize

SITES = {s.label: s for s in operator_sites(Geometry(videos=1), stages=("layer3",))}
IMPLS = ("eager", "compiled", "fused")
PASSES = ("forward", "forward+backward")


@pytest.fixture(scope="module")
def device(request):
    return torch.device(request.config.getoption("--tdn-device"))


def _site(request, label: str):
    videos = request.config.getoption("--tdn-videos")
    device = torch.device(request.config.getoption("--tdn-device"))
    videos = videos or (8 if device.type == "cuda" else 1)
    sites = {s.label: s for s in operator_sites(Geometry(videos=videos), stages=("layer3",))}
    return sites[label]


@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("label", list(SITES))
def test_operator(benchmark, request, device, label, impl, pass_name):
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    site = _site(request, label)
    if pass_name not in passes_of(site.op, PASSES):
        pytest.skip(f"{site.op} is an inference operator: it has no backward")
    if device.type != "cpu" and site.op in tdn_ops.INFERENCE_OPERATORS:
        pytest.skip(f"{site.op} has a CPU kernel only")
    dtype = DTYPES[request.config.getoption("--tdn-dtype")]
    if impl == "fused":
        backends = implementations.fused_backends(device, (site.op,))
        if not backends:
            pytest.skip(f"no fused backend for {site.op} on {device} (extension not built?)")
        impl = backends[0]
    bench = OperatorBench(site, dtype, device, rotate_cap_bytes=256 << 20)
    step = bench.step(implementations.operator_fn(site.op, impl), pass_name)
    counter = itertools.count()

    def call():
        step(next(counter))
        synchronize(device)

    for _ in range(3):                       # compile, allocator warm-up
        call()
    benchmark.extra_info.update(impl=impl, site=site.site, shape=site.shape_text(),
                                bytes=bench.traffic[pass_name], dtype=str(dtype))
    benchmark.pedantic(call, rounds=20, iterations=1, warmup_rounds=1)
    if benchmark.stats is not None:
        median = benchmark.stats.stats.median
        benchmark.extra_info["gbps"] = bench.traffic[pass_name] / median / 1e9
