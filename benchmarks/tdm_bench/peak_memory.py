"""Peak memory of one call: the most bytes PyTorch held at once during it, above what was
already live when it started (weights, their gradients, optimizer state and inputs are the
same for the implementations compared, so the difference is activations and temporaries).

GPU: the caching allocator's own counters (``torch.cuda.max_memory_allocated``).
CPU: PyTorch keeps no such counter, and RSS would mix in glibc's caching and oneDNN's pools, so
the call runs once under ``torch.profiler`` with ``profile_memory=True``; every allocation and
free of PyTorch's CPU allocator is then replayed in time order and the running sum's maximum is
the peak. This sees every tensor PyTorch allocates (including the fused kernels' outputs and
workspaces), not memory a library allocates behind PyTorch's back (oneDNN scratch pads).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

METHOD = {
    "cuda": "torch.cuda.max_memory_allocated during the step minus memory_allocated before it",
    "cpu": "replay of torch.profiler(profile_memory=True) CPU allocation events: max running "
           "sum of bytes allocated minus freed during the step",
}


def peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes allocated during ``fn()`` above the bytes live when it started."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    return _cpu_peak_bytes(fn)


def _cpu_peak_bytes(fn: Callable[[], object]) -> int:
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.typed[0] == _EventType.Allocation:
            fields = node.typed[1]
            if fields.device.type == "cpu":
                events.append((node.start_time_ns, fields.alloc_size))
        stack.extend(node.children)
    if not events:
        raise RuntimeError("torch.profiler recorded no CPU allocations; cannot measure memory")
    events.sort()
    live = peak = 0
    for _, size in events:
        live += size
        peak = max(peak, live)
    return int(peak)
